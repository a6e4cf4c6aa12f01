"""The fault suite's counts: kills survived, faults injected, inputs tried, ledger rows lost.

    .venv/bin/python -m bench.faults

Runs the fault tests (tests/e2e/test_faults.py, test_resilience.py, test_outages.py when
present, test_fuzz.py, and the tenancy attacks of test_tenancy.py, of the HTTP listeners in
tests/web and of RBAC in tests/deploy/test_install.py) against a fresh local
control plane, reads the counts they print, and writes them to docs/benchmarks.md. A failing
test fails this script: no count is reported from a run that did not pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from bench._harness import ROOT, Report, command_line, load, machine

#: In the suite's own order (tests/deploy installs into a cluster the e2e platform has not
#: touched yet).
TESTS = [
    "tests/deploy/test_install.py",
    "tests/web/test_internal_auth.py",
    "tests/web/test_webhooks.py",
    "tests/e2e/test_faults.py",
    "tests/e2e/test_resilience.py",
    "tests/e2e/test_outages.py",
    "tests/e2e/test_fuzz.py",
    "tests/e2e/test_tenancy.py",
]
KILLS = re.compile(r"^\.*([a-z-]+): (\d+) kills survived, (\d+) ledger rows, (\d+) lost$", re.M)
FUZZ = re.compile(r"generated specs: (\d+) refused by the schema, (\d+) handled", re.M)
PASSED = re.compile(r"(\d+) passed")
ATTACK = re.compile(r"^attack (\d+) (.+): refused as (\w+), nothing leaked$", re.M)


def main() -> None:
    report = Report()
    report(f"command: {command_line()}")
    report(machine())
    report(f"at start: {load()}")
    tests = [t for t in TESTS if (ROOT / t).exists()]
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if run.returncode != 0:
        print(run.stdout[-5000:], run.stderr[-2000:], sep="\n")
        raise SystemExit(f"the fault tests failed (exit {run.returncode}); nothing reported")
    kills = KILLS.findall(run.stdout)
    fuzz = FUZZ.search(run.stdout)
    passed = PASSED.search(run.stdout)
    report(
        f"tests: {', '.join(tests)}: {passed.group(1) if passed else '?'} passed in {seconds:.0f} s"
    )
    report("operator killed (SIGKILL-like exit) at every step of recording a transition:")
    for point, count, rows, lost in kills:
        report(f"  {point:14} {count:>3} kills survived, {rows:>3} ledger rows, {lost} lost")
    report(
        f"  total: {sum(int(k[1]) for k in kills)} kills survived, "
        f"{sum(int(k[3]) for k in kills)} rows lost"
    )
    report(
        "other faults injected, each followed by automatic recovery: operator killed mid-build "
        "and mid-rollout, git server stopped, git repository unreachable, API server "
        "restarted, leader killed, hand edits to owned objects, missing Secret, foreign "
        "namespace"
        + (", ClusterIssuer deleted, refused URL" if "test_outages.py" in " ".join(tests) else "")
    )
    if fuzz:
        refused, handled = int(fuzz.group(1)), int(fuzz.group(2))
        report(
            f"generated Project specs: {refused + handled} tried, {refused} refused by the "
            f"schema with the field named, {handled} handled by the operator, 0 crashes"
        )
    attacks = ATTACK.findall(run.stdout)
    if attacks:
        report(
            f"tenancy attacks (issue 14): {len(attacks)} tried, {len(attacks)} refused, "
            "0 ledger rows or Secrets leaked (each asserted by its test):"
        )
        for number, what, reason in sorted(attacks, key=lambda attack: int(attack[0])):
            report(f"  {number}. {what}: {reason}")
    report(f"at end: {load()}")
    report.write_section(
        "faults",
        "The fault suite (bench/faults.py)",
        intro="Counts from one passing run of the fault tests.",
    )


if __name__ == "__main__":
    main()
