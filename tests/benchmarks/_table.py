"""The one results table: generic rows in, an aligned markdown pipe table out.

A row is a dict: ``group`` (the benchmark, e.g. "pipeline, 1 msg/hop"), ``peer``, any metric
values, and ``note``. Known metrics get a column with a header and a format (``COLUMNS``); any
other key a provider returns becomes an extra column after them, so that a new benchmark needs no
change here. Keys in ``HIDDEN`` never become columns. Groups keep the order of their first row;
the group name is printed on the first row of each group only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

__all__ = ["Column", "COLUMNS", "HIDDEN", "render", "add_ratios", "fmt_number"]

MISSING = "-"


def fmt_number(value: Any) -> str:
    """Thousands separators for large numbers, three significant digits for small ones."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value else "0"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: Callable[[Any], str] = fmt_number
    numeric: bool = True


COLUMNS: tuple[Column, ...] = (
    Column("group", "benchmark", str, numeric=False),
    Column("peer", "peer", str, numeric=False),
    Column("n", "N"),
    Column("msg_per_s", "msg/s (median)"),
    Column("spread", "run spread", lambda v: f"{v:.0%}"),
    Column("ratio", "vs streamvisor", lambda v: f"{v:.2f}x"),
    Column("ctx_per_1k", "ctx sw / 1k msg", lambda v: f"{v:.2f}"),
    Column("idle_count", "idle actors"),
    Column("rss_per_actor", "RSS B/actor"),
    Column("heap_per_actor", "heap B/actor"),
    Column("spawn_per_s", "spawn/s"),
)
NOTE = Column("note", "note", str, numeric=False)
HIDDEN = frozenset({"reference", "runs", "key", "ops_per_s", "name"})


def add_ratios(rows: list[dict[str, Any]], metric: str = "msg_per_s") -> None:
    """Fill ``ratio`` = metric / the metric of the group's ``reference`` row, where both exist."""
    references = {row["group"]: row.get(metric) for row in rows if row.get("reference")}
    for row in rows:
        base = references.get(row.get("group"))
        if "ratio" not in row and base and row.get(metric) is not None:
            row["ratio"] = row[metric] / base


def _columns(rows: list[dict[str, Any]]) -> list[Column]:
    known = {c.key for c in COLUMNS} | {NOTE.key} | HIDDEN
    extra: list[str] = []
    for row in rows:
        extra += [k for k in row if k not in known and k not in extra and not k.startswith("_")]
    return [*COLUMNS, *(Column(k, k) for k in extra), NOTE]


def _cell(column: Column, row: dict[str, Any]) -> str:
    value = row.get(column.key)
    if value is None or value == "":
        return MISSING if column.numeric else ""
    try:
        text = column.fmt(value)
    except (TypeError, ValueError):
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _grouped(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    order: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        order.setdefault(str(row.get("group", "")), []).append(row)
    return [row for group in order.values() for row in group]


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned markdown pipe table (one header, groups in first-seen order)."""
    rows = _grouped(rows)
    columns = _columns(rows)
    body, previous = [], None
    for row in rows:
        cells = [_cell(c, row) for c in columns]
        if row.get("group") == previous:
            cells[0] = ""
        previous = row.get("group")
        body.append(cells)
    headers = [c.header for c in columns]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [cell.rjust(w) if c.numeric else cell.ljust(w)
                  for cell, w, c in zip(cells, widths, columns)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if c.numeric else "-" * (w + 2)
                          for w, c in zip(widths, columns)) + "|"
    return "\n".join([line(headers), rule, *(line(cells) for cells in body)])
