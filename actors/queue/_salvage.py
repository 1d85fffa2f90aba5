"""Salvage the valid records of a damaged queue file (it was already moved aside).

Two passes, both best effort and bounded:

1. Through SQLite: read ``messages`` in id order, 1,000 rows at a time. When a read fails, the
   unreadable id range is skipped (probing forward with doubling steps) and remembered.
2. Only if pass 1 failed somewhere: scan the raw pages (``_rawscan``) and take the records whose
   ids fall in the unreadable ranges. Records in readable ranges are never taken from raw pages,
   so acknowledged (deleted) records left in free space do not come back.

Every kept record passes ``valid_row``: column types and the CRC32 of id, queue, key and
payload. ``lost`` estimates the records that were there but are not kept: from ``count(*)`` when
SQLite can still count, else the raw cells that failed validation, else None.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ._rawscan import missing_pages, scan_records
from ._schema import COLUMNS, row_crc, tolerant_text

__all__ = ["Salvage", "salvage", "valid_row"]

_CHUNK = 1000
_MAX_PROBES = 10_000
_ID_MAX = 2 ** 63 - 1
# What reading a damaged file may raise (besides OSError for an unreadable file).
_READ_ERRORS = (sqlite3.Error, ValueError, OverflowError)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM messages WHERE id > ? ORDER BY id LIMIT {_CHUNK}"


@dataclass
class Salvage:
    """What salvage found: valid rows by id, acked counters, the id high-water mark."""

    rows: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    seq: int = 0
    lost: int | None = 0
    notes: list[str] = field(default_factory=list)


def _num(v: Any) -> bool:
    return type(v) in (int, float)


def valid_row(row: tuple[Any, ...] | list[Any]) -> tuple[Any, ...] | None:
    """The row normalised (REAL columns as float, leased -> waiting) if every column is sound,
    else None."""
    if len(row) != len(COLUMNS):
        return None
    (id_, queue, state, visible_at, attempts, lease, expires_at, reason, error, key, crc,
     payload) = row
    if not (type(id_) is int and id_ > 0 and type(queue) is str and state in (0, 1, 2, 3)
            and type(state) is int and _num(visible_at) and type(attempts) is int
            and attempts >= 0 and (lease is None or type(lease) is int)
            and (expires_at is None or _num(expires_at)) and (reason is None or type(reason) is str)
            and (error is None or type(error) is str) and (key is None or type(key) is str)
            and type(crc) is int and type(payload) is bytes):
        return None
    if row_crc(id_, queue, key, payload) != crc:
        return None
    if not _utf8(queue) or not (key is None or _utf8(key)):
        return None
    if state == 1:
        state = 3  # its lease row is not salvaged: deliver it again once that lease would end
    return (id_, queue, state, float(visible_at), attempts, lease,
            None if expires_at is None else float(expires_at), _text(reason), _text(error), key,
            crc, payload)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(text: str | None) -> str | None:
    """Unchecksummed text (reason, error) with damaged bytes replaced, so it can be stored."""
    if text is None or _utf8(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _one(conn: sqlite3.Connection, sql: str, default: Any) -> Any:
    try:
        row = conn.execute(sql).fetchone()
    except _READ_ERRORS:
        return default
    return default if row is None or row[0] is None else row[0]


def _read_sql(conn: sqlite3.Connection, out: Salvage) -> tuple[list[tuple[int, int]], int]:
    """Pass 1. Returns the unreadable id ranges ``(after, upto]`` and the invalid-row count."""
    failed: list[tuple[int, int]] = []
    invalid = probes = 0
    last = 0
    while probes < _MAX_PROBES:
        probes += 1
        got = 0
        try:
            for raw in conn.execute(_SELECT, (last,)):
                got += 1
                last = raw[0] if type(raw[0]) is int and raw[0] > last else last + 1
                row = valid_row(raw)
                if row is None:
                    invalid += 1
                else:
                    out.rows[row[0]] = row
            if got < _CHUNK:
                return failed, invalid
            continue
        except _READ_ERRORS:
            pass
        step = 1  # the range after `last` is unreadable: probe forward until a read works
        while probes < _MAX_PROBES and last + step < _ID_MAX:
            probes += 1
            try:
                conn.execute("SELECT id FROM messages WHERE id > ? ORDER BY id LIMIT 1",
                             (last + step,)).fetchall()
                break
            except _READ_ERRORS:
                step *= 2
        upto = min(last + step, _ID_MAX)
        failed.append((last, upto))
        last = upto
        if upto >= _ID_MAX:
            return failed, invalid
    failed.append((last, _ID_MAX))
    return failed, invalid


def _in(ranges: list[tuple[int, int]], rowid: int) -> bool:
    return any(after < rowid <= upto for after, upto in ranges)


def salvage(path: str) -> Salvage:
    """Read what can be read from the damaged file at ``path``. Blocking; raises ``OSError``
    only if the file cannot be opened at all (SQLite errors are absorbed and counted)."""
    out = Salvage()
    count = None
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except _READ_ERRORS as exc:
        out.notes.append(f"sqlite cannot open it: {exc}")
        failed, invalid = [(0, _ID_MAX)], 0
    else:
        conn.text_factory = tolerant_text
        try:
            seq = _one(conn, "SELECT v - 1 FROM meta WHERE k = 'next_id'", 0)
            out.seq = seq if type(seq) is int else 0
            count = _one(conn, "SELECT count(*) FROM messages", None)
            try:
                out.counters = {q: n for q, n in conn.execute("SELECT queue, acked FROM counters")
                                if type(q) is str and _utf8(q) and type(n) is int}
            except _READ_ERRORS:
                out.notes.append("acked counters lost")
            failed, invalid = _read_sql(conn, out)
        finally:
            conn.close()
    estimate: int | None = invalid
    if failed:
        out.notes.append(f"{len(failed)} unreadable id range(s); scanned raw pages")
        for _pno, rowid, values in scan_records(path):
            if rowid in out.rows or not _in(failed, rowid):
                continue
            row = valid_row([rowid, *values[1:]])
            if row is None:
                invalid += 1
            else:
                out.rows[rowid] = row
        pages = missing_pages(path)
        if pages and pages[0]:  # truncated: guess lost pages held records like the others
            missing, present = pages
            out.notes.append(f"{missing} page(s) missing (truncated)")
            per_page = len(out.rows) / present if out.rows else 1.0
            estimate = invalid + round(missing * per_page)
        elif pages is None and not out.rows and not invalid:
            estimate = None  # nothing readable and nothing to count
        else:
            estimate = invalid
    out.lost = max(count - len(out.rows), invalid) if type(count) is int else estimate
    return out
