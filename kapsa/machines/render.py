"""The machines as people read them: Mermaid diagrams and transition lists, drawn from the
shared definitions so that the pictures cannot drift from what the reconciler decides.

The library's own Mermaid renderer needs a model bound to the machine and paints per-object
styling; the shared machines carry no model, so the graph is walked here instead. A trigger that
leaves every live state for the same place is drawn once, from a `Live` box around those states,
so the picture shows the flow instead of a fan of identical arrows.
"""

from __future__ import annotations

from typing import Any, Literal

from kapsa.machines.base import LIVE, Definition
from kapsa.machines.environment import ENVIRONMENT
from kapsa.machines.project import PROJECT

Kind = Literal["project", "environment"]
KINDS: tuple[Kind, ...] = ("project", "environment")
LIVE_BOX = "Live"


def definition(kind: Kind) -> Definition[Any]:
    """The shared definition of a kind, by its lower-case name."""
    definitions: dict[str, Definition[Any]] = {"project": PROJECT, "environment": ENVIRONMENT}
    return definitions[kind]


def transitions_of(kind: Kind) -> list[tuple[str, str, str, str]]:
    """(source, trigger, dest, description) of every transition, in the machine's priority order."""
    return definition(kind).transitions()


def edges(kind: Kind) -> dict[tuple[str, str], list[str]]:
    """(source, dest) -> triggers, with `Live` standing for every live state at once."""
    sources: dict[tuple[str, str], set[str]] = {}
    for source, trigger, dest, _ in transitions_of(kind):
        sources.setdefault((trigger, dest), set()).add(source)
    grouped: dict[tuple[str, str], list[str]] = {}
    for source, trigger, dest, _ in transitions_of(kind):
        from_all_live = set(LIVE) <= sources[(trigger, dest)]
        key = (LIVE_BOX if from_all_live and source in LIVE else source, dest)
        if trigger not in grouped.setdefault(key, []):
            grouped[key].append(trigger)
    return grouped


def mermaid(kind: Kind) -> str:
    """The kind's machine as a Mermaid `stateDiagram-v2`."""
    machine = definition(kind).machine
    inside: list[str] = []
    outside: list[str] = []
    for (source, dest), triggers in edges(kind).items():
        line = f"{source} --> {dest} : {' / '.join(triggers)}"
        within = source in LIVE and dest in LIVE
        (inside if within else outside).append(line)
    lines = ["stateDiagram-v2", f"    state {LIVE_BOX} {{", f"        [*] --> {machine.initial}"]
    lines += [f"        {line}" for line in inside]
    lines += ["    }", f"    [*] --> {LIVE_BOX}"]
    lines += [f"    {line}" for line in outside]
    lines += [f"    {name} --> [*]" for name, state in machine.states.items() if state.final]
    return "\n".join(lines)


def dot(kind: Kind) -> str:
    """The kind's machine as Graphviz DOT, from the same edges as the Mermaid diagram.

    `dot -Tsvg` draws it (`kapsa diagram KIND --format svg`); docs/images keeps the drawings,
    beside the Mermaid source in docs/state-machines.md, for viewers that render no Mermaid.
    """
    machine = definition(kind).machine
    title = definition(kind).kind
    lines = [
        f'digraph "{title}" {{',
        "    compound=true;",
        '    rankdir=LR; fontname="Helvetica"; nodesep=0.4; ranksep=0.6;',
        '    node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    start [shape=point, width=0.15, label=""];',
        f'    subgraph cluster_live {{ label="{LIVE_BOX}"; style="rounded,dashed";',
    ]
    lines += [f'        "{state}";' for state in LIVE]
    lines.append("    }")
    for name, state in machine.states.items():
        if name not in LIVE:
            shape = ", shape=doublecircle" if state.final else ""
            lines.append(f'    "{name}" [fillcolor="#f6f6f6"{shape}];')
    lines.append(f'    start -> "{machine.initial}";')
    for (source, dest), triggers in edges(kind).items():
        label = "\\n".join(triggers)
        if source == LIVE_BOX:
            anchor = LIVE[len(LIVE) // 2]
            lines.append(f'    "{anchor}" -> "{dest}" [ltail=cluster_live, label="{label}"];')
        else:
            lines.append(f'    "{source}" -> "{dest}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
