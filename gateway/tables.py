"""Tables for people: every table printed fits the console's width, and no cell is ever cut
with an ellipsis (ticket ids, device names and times are what people copy from them)."""

from __future__ import annotations

import os
import sys

from rich import box
from rich.console import Console, ConsoleRenderable, RenderableType, RenderHook
from rich.measure import Measurement
from rich.table import Table

# A pipe or a file has no width: what goes there is never wrapped to one.
UNBOUNDED = 100_000


def stdout_console() -> Console:
    """Standard output for people: a terminal's width (or $COLUMNS), and a pipe or a file
    as wide as each line needs; its tables fit that width, never cutting a word short."""
    unbounded = not sys.stdout.isatty() and not os.environ.get("COLUMNS", "").isdigit()
    console = Console(width=UNBOUNDED if unbounded else None)
    console.push_render_hook(FitTables(console))
    return console


class FitTables(RenderHook):
    """Every table printed on the console fits its width: no cell is ever cut with an ellipsis
    (ticket ids, device names and times are what people copy from them)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        for r in renderables:
            if isinstance(r, Table):
                fit_table(r, self.console)
        return renderables


def fit_table(table: Table, console: Console) -> None:
    """Lay `table` out in the console's width: as it is if it fits; else with one space between
    columns and widths that keep every word whole; else folding words onto the next line, in
    the rightmost columns first (the leftmost say which row it is: its id, its device, its
    time). Never cut short."""
    for col in table.columns:
        col.overflow = "fold"
    if console.width >= UNBOUNDED:
        table.expand = False
        return
    spans = [_span(console, [col.header, *col.cells]) for col in table.columns]
    if sum(most for _, most in spans) + _overhead(table) <= console.width:
        return
    table.box, table.show_edge, table.padding, table.expand = box.SIMPLE_HEAD, False, (0, 0), False
    room = console.width - (len(spans) - 1)  # one space between columns
    widths = [fewest for fewest, _ in spans]
    short = sum(widths) - room
    for i in reversed(range(len(widths))):
        if short <= 0:
            break
        cut = min(short, max(0, widths[i] - FOLDED_WIDTH))
        widths[i] -= cut
        short -= cut
    if short > 0:
        return  # too narrow for any layout: rich folds every column as it must
    spare, wanted = room - sum(widths), sum(most - w for w, (_, most) in zip(widths, spans, strict=True))
    for col, w, (_, most) in zip(table.columns, widths, spans, strict=True):
        col.width = w + (spare * (most - w) // wanted if wanted > 0 else 0)


# The narrowest a column is made to fold its words, so they still read: `BREACH` / `ED`.
FOLDED_WIDTH = 6


def _span(console: Console, cells: list[RenderableType]) -> tuple[int, int]:
    """The column's longest word and its longest line."""
    sizes = [Measurement.get(console, console.options, c) for c in cells]
    return max(m.minimum for m in sizes), max(m.maximum for m in sizes)


def _overhead(table: Table) -> int:
    """What the table's borders and padding take beside its cells."""
    n = len(table.columns)
    left, right = table.padding[3], table.padding[1]
    edges = 2 if table.box is not None and table.show_edge else 0
    between = n - 1 if table.box is not None else 0
    return edges + between + n * (left + right)
