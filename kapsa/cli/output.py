"""Printing rows for people and for pipes, without ever losing a column unannounced.

A table that fits a terminal must leave something out when the terminal is narrow; a pipe
(`kapsa history api | grep BuildFailed`) has no width at all and must keep everything. So:

- `table` (the default on a terminal) fits the terminal: long free text folds onto more lines,
  and when even that cannot fit, the least needed columns are left out *and named on stderr*,
  with the option that shows them.
- `tsv` (the default when stdout is not a terminal): a header line, then one line per row,
  every column, every value whole, separated by tabs.
- `wide`: every column, aligned, however wide that makes the lines.
- `json` and `yaml`: the data itself, as the ledger's HTTP API sends it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table


class Output(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    TSV = "tsv"
    JSON = "json"
    YAML = "yaml"


OUTPUT_HELP = (
    "table (the default on a terminal), wide, tsv (the default in a pipe: every column), "
    "json or yaml."
)
#: The narrowest a folding column gets before columns are left out instead.
MIN_FOLD_WIDTH = 16
#: Space between two columns.
GAP = 2


@dataclass(frozen=True, kw_only=True)
class Column:
    """One column: its header, whether it may fold, and how readily a narrow terminal drops it.

    `drop` orders the columns a narrow terminal leaves out: 1 goes first, 2 next; 0 never goes.
    """

    header: str
    fold: bool = False
    drop: int = 0


def terminal() -> Console:
    """A console on stdout as it is now (tests swap stdout); rich decides whether it is a TTY."""
    return Console(file=sys.stdout, soft_wrap=False)


def resolve(output: Output | None) -> Output:
    """The format asked for, or the one that suits where stdout goes."""
    if output is not None:
        return output
    return Output.TABLE if terminal().is_terminal else Output.TSV


def show(
    data: Any,
    *,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    output: Output | None,
    command: str,
) -> None:
    """Print `data` as json/yaml, or `rows` under `columns` as a table, wide or TSV."""
    chosen = resolve(output)
    if chosen is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
    elif chosen is Output.YAML:
        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    elif chosen is Output.TSV:
        typer.echo("\t".join(c.header for c in columns))
        for row in rows:
            typer.echo("\t".join(_one_line(cell) for cell in row))
    elif chosen is Output.WIDE:
        widths = _natural_widths(columns, rows)
        console = Console(file=sys.stdout, soft_wrap=False, width=sum(widths) + GAP * len(widths))
        console.print(_table(columns, rows, keep=range(len(columns)), fold=False))
    else:
        _fitted(columns, rows, command=command)


def _one_line(cell: str) -> str:
    """A cell as one TSV field: tabs and line breaks would split it, so they become spaces."""
    return " ".join(cell.replace("\t", " ").splitlines())


def _natural_widths(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max([len(c.header), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]


def fitting(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], *, width: int
) -> tuple[list[int], bool]:
    """The columns that fit in `width` (dropping by `Column.drop`, 1 first), and whether even
    those are too wide, so that every cell must fold: rich would drop columns silently."""
    natural = _natural_widths(columns, rows)
    keep = list(range(len(columns)))

    def needed() -> int:
        cells = sum(
            min(natural[i], MIN_FOLD_WIDTH) if columns[i].fold else natural[i] for i in keep
        )
        return cells + GAP * (len(keep) - 1)

    droppable = sorted((c.drop, i) for i, c in enumerate(columns) if c.drop > 0)
    for _, index in droppable:
        if needed() <= width:
            break
        keep.remove(index)
    return keep, needed() > width


def _fitted(columns: Sequence[Column], rows: Sequence[Sequence[str]], *, command: str) -> None:
    console = terminal()
    keep, cramped = fitting(columns, rows, width=console.width)
    console.print(_table(columns, rows, keep=keep, fold_all=cramped))
    left_out = [columns[i].header for i in range(len(columns)) if i not in keep]
    if left_out:
        typer.echo(
            f"{command}: {', '.join(left_out)} left out to fit {console.width} columns; "
            "-o wide or -o tsv shows every column",
            err=True,
        )


def _table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    keep: Sequence[int],
    fold: bool = True,
    fold_all: bool = False,
) -> Table:
    """The rows under the `keep` columns; with `fold`, free text folds; with `fold_all`, all."""
    table = Table(box=None, header_style="bold", padding=(0, GAP, 0, 0), pad_edge=False)
    natural = _natural_widths(columns, rows)
    for i in keep:
        folds = fold_all or (fold and columns[i].fold)
        table.add_column(
            columns[i].header,
            no_wrap=not folds,
            overflow="fold" if folds else "ignore",
            min_width=None if folds else natural[i],
        )
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table
