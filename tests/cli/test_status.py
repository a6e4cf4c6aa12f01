"""`kapsa status`'s screen, from the objects' status as the operator writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from kapsa.cli.output import Output
from kapsa.cli.status import age, print_status

NOW = datetime.now(UTC)


def _at(**delta: float) -> str:
    return (NOW + timedelta(**delta)).isoformat().replace("+00:00", "Z")


PROJECT = {
    "metadata": {"name": "api"},
    "spec": {"source": {"git": {"url": "https://git.corp.com/myapp/api.git"}}},
    "status": {
        "phase": "Failed",
        "namespace": "api",
        "latestCommit": "a" * 40,
        "latestImage": "harbor.corp.com/myapp/api@sha256:" + "1" * 64,
        "lastPollTime": _at(minutes=-3),
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "EnvironmentFailed",
                "message": "environment prod failed",
                "lastTransitionTime": _at(hours=-2),
            }
        ],
        "previews": [
            {"name": "feature-a", "branch": "feature/a", "commit": "b" * 40, "buildState": "None"},
            {
                "name": "feature-b",
                "branch": "feature/b",
                "commit": "c" * 40,
                "buildState": "Failed",
                "message": "npm install failed",
                "waiting": True,
            },
        ],
    },
}
ENVIRONMENTS = [
    {
        "metadata": {"name": "feature-a"},
        "spec": {"project": "api", "type": "preview", "branch": "feature/a"},
        "status": {"phase": "Running", "commit": "b" * 40, "expiresAt": _at(hours=5, minutes=1)},
    },
    {
        "metadata": {"name": "prod"},
        "spec": {"project": "api", "type": "standard", "branch": "main"},
        "status": {
            "phase": "Failed",
            "commit": "a" * 40,
            "url": "https://prod.api.apps.corp.com",
            "conditions": [
                {"type": "Ready", "status": "False", "message": "rollout missed its deadline"}
            ],
        },
    },
]


def test_one_screen_says_what_each_environment_runs_and_why_it_is_not_ready(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_status(PROJECT, ENVIRONMENTS, output=None)  # captured: not a terminal, so wide

    out = capsys.readouterr().out
    assert "Ready      False (EnvironmentFailed): environment prod failed" in out
    assert "branches read 3m ago" in out
    lines = out.splitlines()
    envs = lines.index("Environments")
    # Standard environments first, then previews; nothing cut in a pipe.
    prod, preview = lines[envs + 2], lines[envs + 3]
    assert prod.split()[:6] == ["prod", "standard", "main", "Failed", "False", "a" * 12]
    assert "https://prod.api.apps.corp.com" in prod
    assert prod.rstrip().endswith("rollout missed its deadline")
    assert preview.startswith("feature-a ") and "in 5h (" in preview
    waiting = next(line for line in lines if line.startswith("feature/b "))
    assert "waits for a free slot" in waiting and "npm install failed" in waiting
    conditions = lines[lines.index("Conditions") + 2]
    assert conditions.split()[:4] == ["Ready", "False", "EnvironmentFailed", "2h"]


def test_yaml_is_the_objects_themselves(capsys: pytest.CaptureFixture[str]) -> None:
    print_status(PROJECT, ENVIRONMENTS, output=Output.YAML)

    assert yaml.safe_load(capsys.readouterr().out) == {
        "project": PROJECT,
        "environments": ENVIRONMENTS,
    }


@pytest.mark.parametrize(
    ("delta", "shown"),
    [(timedelta(seconds=45), "45s"), (timedelta(minutes=12), "12m"), (timedelta(days=3), "3d")],
)
def test_ages_read_as_kubectl_prints_them(delta: timedelta, shown: str) -> None:
    assert age((NOW - delta).isoformat(), now=NOW) == shown
    assert age(None, now=NOW) == "-"
