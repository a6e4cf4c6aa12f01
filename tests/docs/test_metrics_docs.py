"""docs/operations.md lists every metric the operator exports, with its type and labels."""

from __future__ import annotations

import re
from pathlib import Path

from kapsa import metrics

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
_ROW = re.compile(r"^\| `(kapsa_[a-z_]+)` \| (\w+) \|([^|]*)\|", re.MULTILINE)


def documented() -> dict[str, tuple[str, set[str]]]:
    return {
        name: (kind, set(re.findall(r"`(\w+)`", labels)))
        for name, kind, labels in _ROW.findall(OPERATIONS.read_text(encoding="utf-8"))
    }


def exported() -> dict[str, tuple[str, set[str]]]:
    """Name (with _total for counters, as scraped), type and the label names of every family."""
    found = {}
    for family in metrics.REGISTRY.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {k for sample in family.samples for k in sample.labels if k != "le"}
        found[name] = (family.type, labels)
    return found


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    docs, code = documented(), exported()

    assert sorted(docs) == sorted(code), "docs/operations.md's metrics table and kapsa/metrics.py"
    for name, (kind, labels) in code.items():
        assert docs[name][0] == kind, name
        # Families without a sample yet (nothing counted) show no labels: the docs may say more.
        assert labels <= docs[name][1], name
