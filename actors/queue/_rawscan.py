"""Read records straight from SQLite pages, for when SQLite itself cannot (salvage only).

A corrupt header, a broken interior b-tree page or a truncated file make SQLite refuse whole
ranges of a table although most leaf pages are intact. This scanner walks every page of the
file (SQLite file format, section 1.6: table b-tree leaf pages, type 0x0D), decodes each cell's
record (following overflow chains) and keeps those with the queue table's 12 columns. Callers
validate each row's checksum; the scanner itself never raises on bad bytes.

Known limits: pages that only live in the WAL are not seen (SQLite reads those when it can),
and freelist pages are skipped only when the header is readable (a damaged header may let a
deleted record reappear: at-least-once, never loss).
"""

from __future__ import annotations

import mmap
import struct
from typing import Iterator

__all__ = ["missing_pages", "scan_records"]

_HEADER = b"SQLite format 3\x00"
_DEFAULT_PAGE_SIZE = 4096
_NCOLUMNS = 12
_INT_SIZES = (0, 1, 2, 3, 4, 6, 8)


class _Bad(Exception):
    """A cell or record that does not parse (internal to the scanner)."""


def _varint(buf: bytes | mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        if pos >= end:
            raise _Bad("varint runs off the page")
        byte = buf[pos]
        pos += 1
        if i == 8:
            return (value << 8) | byte, pos
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
    raise _Bad("unreachable")


def _record(rec: bytes) -> list[object]:
    hlen, p = _varint(rec, 0, len(rec))
    if not 1 <= hlen <= len(rec):
        raise _Bad("bad record header length")
    types = []
    while p < hlen:
        t, p = _varint(rec, p, hlen)
        types.append(t)
    if len(types) != _NCOLUMNS:
        raise _Bad("not a queue record")
    values: list[object] = []
    q = hlen
    for t in types:
        if t == 0:
            values.append(None)
        elif t <= 6:
            n = _INT_SIZES[t]
            values.append(int.from_bytes(rec[q:q + n], "big", signed=True))
            q += n
        elif t == 7:
            values.append(struct.unpack_from(">d", rec, q)[0] if q + 8 <= len(rec) else None)
            q += 8
        elif t in (8, 9):
            values.append(t - 8)
        elif t >= 12:
            n = (t - 12) // 2
            raw = bytes(rec[q:q + n])
            q += n
            values.append(raw if t % 2 == 0 else raw.decode("utf-8"))
        else:
            raise _Bad("reserved serial type")
    if q != len(rec):
        raise _Bad("record length mismatch")
    return values


def _payload(data: mmap.mmap, pos: int, page_end: int, size: int, ps: int, usable: int,
             npages: int) -> bytes:
    x = usable - 35
    if size <= x:
        local = size
    else:
        m = ((usable - 12) * 32 // 255) - 23
        k = m + ((size - m) % (usable - 4))
        local = k if k <= x else m
    if pos + local > page_end:
        raise _Bad("cell runs off the page")
    parts = [data[pos:pos + local]]
    have, nxt = local, None
    if size > local:
        if pos + local + 4 > page_end:
            raise _Bad("overflow pointer runs off the page")
        nxt = int.from_bytes(data[pos + local:pos + local + 4], "big")
    while have < size:
        if nxt is None or not 2 <= nxt <= npages:
            raise _Bad("broken overflow chain")
        base = (nxt - 1) * ps
        take = min(usable - 4, size - have)
        parts.append(data[base + 4:base + 4 + take])
        have += take
        nxt = int.from_bytes(data[base:base + 4], "big") or None
    return b"".join(parts)


def _freelist(data: mmap.mmap, ps: int, npages: int) -> set[int]:
    pages: set[int] = set()
    trunk = int.from_bytes(data[32:36], "big")
    while 2 <= trunk <= npages and trunk not in pages and len(pages) < npages:
        pages.add(trunk)
        base = (trunk - 1) * ps
        count = int.from_bytes(data[base + 4:base + 8], "big")
        for i in range(min(count, ps // 4 - 2)):
            pages.add(int.from_bytes(data[base + 8 + 4 * i:base + 12 + 4 * i], "big"))
        trunk = int.from_bytes(data[base:base + 4], "big")
    return pages


def _scan(data: mmap.mmap) -> Iterator[tuple[int, int, list[object] | None]]:
    ps, reserved, skip = _DEFAULT_PAGE_SIZE, 0, set()
    if data[:16] == _HEADER:
        raw = int.from_bytes(data[16:18], "big")
        size = 65536 if raw == 1 else raw
        if size >= 512 and size & (size - 1) == 0:
            ps, reserved = size, data[20]
    npages = len(data) // ps
    if data[:16] == _HEADER:
        skip = _freelist(data, ps, npages)
    usable = ps - reserved
    for pno in range(1, npages + 1):
        if pno in skip:
            continue
        base = (pno - 1) * ps
        hdr = base + (100 if pno == 1 else 0)
        if data[hdr] != 0x0D:
            continue
        ncells = int.from_bytes(data[hdr + 3:hdr + 5], "big")
        first = hdr + 8 + 2 * ncells
        if ncells > ps // 4:
            continue
        for k in range(ncells):
            cell = base + int.from_bytes(data[hdr + 8 + 2 * k:hdr + 10 + 2 * k], "big")
            try:
                if not first <= cell < base + ps:
                    raise _Bad("cell pointer out of the page")
                size, pos = _varint(data, cell, base + ps)
                rowid, pos = _varint(data, pos, base + ps)
                rec = _payload(data, pos, base + ps, size, ps, usable, npages)
                yield pno, rowid - (1 << 64) if rowid >= 1 << 63 else rowid, _record(rec)
            except (_Bad, ValueError, IndexError, struct.error):
                continue


def scan_records(path: str) -> Iterator[tuple[int, int, list[object]]]:
    """Yield ``(page number, rowid, column values)`` for every cell that parses as a queue record.

    The values are in table order; the first (the rowid alias) is None on disk. Blocking file
    I/O; raises only ``OSError`` (cannot open the file).
    """
    with open(path, "rb") as f:
        if f.seek(0, 2) < 100:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for pno, rowid, values in _scan(data):
                if values is not None:
                    yield pno, rowid, values


def missing_pages(path: str) -> tuple[int, int] | None:
    """``(missing, present)`` pages: missing are those the header counts but the file lacks
    (truncation). None if the header is unreadable."""
    with open(path, "rb") as f:
        head = f.read(100)
        size = f.seek(0, 2)
    if len(head) < 100 or head[:16] != _HEADER:
        return None
    raw = int.from_bytes(head[16:18], "big")
    page_size = 65536 if raw == 1 else raw
    declared = int.from_bytes(head[28:32], "big")
    if page_size < 512 or page_size & (page_size - 1) or declared == 0:
        return None
    return max(0, declared - size // page_size), size // page_size
