"""Writes docs/state-machines.md from the machines: `python -m kapsa.machines.docs`.

The page is generated so that it says what the code does; tests/machines/test_docs.py fails when
the checked-in page and the machines disagree.
"""

from __future__ import annotations

import sys
from itertools import groupby

from kapsa.machines.render import KINDS, Kind, definition, mermaid, transitions_of

INTRO = """\
# State machines

Every Project and every Environment is in exactly one state, shown as `status.phase`. Kapsa moves
an object from one state to the next only along the arrows below; each move sets a condition
whose `reason` is listed here and appends a row to the audit ledger. A reconcile that sees nothing
new moves nothing and writes nothing. `Deleted` is not a phase: it means the object is gone.

Where several moves leave the same state, the first one in the table whose condition holds wins.
Moves drawn from the `Live` box leave any of Pending, Building, Deploying, Running and Failed.

This page is generated: run `python -m kapsa.machines.docs > docs/state-machines.md` after
changing a machine, and `python -m kapsa.cli.images` to draw the pictures in `docs/images` again
(Graphviz, from the same machines). `kapsa diagram project` and `kapsa diagram environment`
print the diagrams (`--format mermaid`, `dot` or `svg`).
"""


def _table(kind: Kind) -> list[str]:
    rules = definition(kind).rules
    rows = ["| From | Trigger | To | Reason | What it means, and what Kapsa does |"]
    rows.append("| --- | --- | --- | --- | --- |")
    for (trigger, dest, description), group in groupby(
        transitions_of(kind), key=lambda row: (row[1], row[2], row[3])
    ):
        sources = [source for source, *_ in group]
        reason = rules[(trigger, sources[0])].reason
        rows.append(f"| {', '.join(sources)} | `{trigger}` | {dest} | `{reason}` | {description} |")
    return rows


def render_document() -> str:
    """The whole page, as it must be checked in."""
    parts = [INTRO.rstrip()]
    for kind in KINDS:
        title = definition(kind).kind
        diagram = f"```mermaid\n{mermaid(kind)}\n```"
        picture = f"![The {title} state machine](images/{kind}-states.svg)"
        parts.append(f"## {title}\n\n{picture}\n\n{diagram}\n\n" + "\n".join(_table(kind)))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_document())
