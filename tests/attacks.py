"""The line each tenancy attack test prints once its assertions passed; bench/faults.py counts
them into docs/benchmarks.md (issue 14's figures)."""

from __future__ import annotations


def report_attack(attack: int, what: str, *, refused_as: str) -> None:
    """Printed only after the test asserted that nothing leaked and nothing running stopped."""
    print(f"\nattack {attack} {what}: refused as {refused_as}, nothing leaked")
