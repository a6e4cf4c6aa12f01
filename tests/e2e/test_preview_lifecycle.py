"""A preview's life across its branch's: which branches get one, and a branch that comes back.

A branch deleted and later pushed again is a new piece of work: it gets a new preview with a
history of its own, not the old one revived.
"""

from __future__ import annotations

from typing import Any

import pytest

from kapsa.controlplane import ControlPlane
from kapsa.reconcile.previews import matches
from kapsa.sandbox.gitserver import GitServer
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    assert_chain,
    assert_ledger_clean,
    get,
    history,
    moves,
    project_yaml,
)
from tests.waiting import wait_until

APP = SAMPLE_APP
STANDARD = [{"name": "dev", "branch": "main", "autoSync": True}]


def _preview_envs(control_plane: ControlPlane, name: str) -> dict[str, dict[str, Any]]:
    listing = get(control_plane, "-n", name, "environments", "-l", "kapsa.io/type=preview")
    return {e["spec"]["branch"]: e for e in (listing or {}).get("items", [])}


def _previews(control_plane: ControlPlane, name: str) -> dict[str, dict[str, Any]]:
    project = get(control_plane, "project", name) or {}
    return {p["branch"]: p for p in project.get("status", {}).get("previews", [])}


def _running_preview(
    control_plane: ControlPlane, name: str, branch: str, commit: str, operator: OperatorProcess
) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        env = _preview_envs(control_plane, name).get(branch)
        status = (env or {}).get("status", {})
        if status.get("phase") == "Running" and status.get("commit") == commit:
            return env
        return None

    found = wait_until(
        running,
        timeout=60,
        message=lambda: f"preview of {branch} Running on {commit[:7]}\n{operator.tail()}",
    )
    assert found is not None
    return found


def test_a_deleted_branch_pushed_again_gets_a_fresh_preview(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "reborn"
    branch = "feature/again"
    git_server.create_repo(name, files=APP)
    first = git_server.create_branch(name, branch)
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=git_server.url_for(name),
            environments=STANDARD,
            extra_spec={"previewEnvironments": {"enabled": True, "include": ["feature/*"]}},
        ),
    )
    old = _running_preview(control_plane, name, branch, first, operator)
    old_uid = old["metadata"]["uid"]

    git_server.delete_branch(name, branch)
    wait_until(
        lambda: (
            branch not in _preview_envs(control_plane, name)
            and branch not in _previews(control_plane, name)
        ),
        timeout=60,
        message=lambda: f"preview of {branch} removed\n{operator.tail()}",
    )
    old_rows = moves(
        history(operator_ledger, name), kind="Environment", name=old["metadata"]["name"]
    )

    # Pushed again, straight at a commit the old preview never ran.
    git_server.create_branch(name, "work")
    second = git_server.commit(name, branch="work", files={"app.py": "print('again')\n"})
    git_server.create_branch(name, branch, from_branch="work")
    new = _running_preview(control_plane, name, branch, second, operator)

    assert new["metadata"]["uid"] != old_uid
    assert new["metadata"]["name"] == old["metadata"]["name"] == "feature-again"
    assert new["status"]["url"] == old["status"]["url"]
    assert new["status"]["image"] != old["status"]["image"]
    image = get(control_plane, "-n", name, "image.kpack.io", f"{name}-feature-again")
    assert image["spec"]["source"]["git"]["revision"] == second

    rows = history(operator_ledger, name)
    fresh = [r for r in rows if r.uid == new["metadata"]["uid"]]
    assert [r.seq for r in fresh] == list(range(1, len(fresh) + 1))
    assert_chain([(r.from_state, r.to_state, r.trigger) for r in fresh], ends="Running")
    assert fresh[-1].commit == second
    # The old preview's history is closed and stays as it was.
    gone = [(r.from_state, r.to_state, r.trigger) for r in rows if r.uid == old_uid]
    assert gone == old_rows
    assert gone[-1] == ("Expiring", "Deleted", "removed")
    assert_ledger_clean(operator_ledger, name)


INCLUDE_ALL = ["*"]
FEATURES = ["feature/*"]
NO_WIP = ["feature/wip-*"]


@pytest.mark.parametrize(
    ("branch", "include", "exclude", "expected"),
    [
        # `*` takes every branch, nested ones included.
        ("main", INCLUDE_ALL, [], True),
        ("feature/x", INCLUDE_ALL, [], True),
        ("feature/a/b", INCLUDE_ALL, [], True),
        # A prefix pattern takes its folder, at any depth, and nothing beside it.
        ("feature/x", FEATURES, [], True),
        ("feature/a/b", FEATURES, [], True),
        ("feature", FEATURES, [], False),
        ("features/x", FEATURES, [], False),
        ("bugfix/feature/x", FEATURES, [], False),
        ("main", FEATURES, [], False),
        # Patterns are case-sensitive, as git branch names are.
        ("Feature/x", FEATURES, [], False),
        # Exclude wins over include.
        ("feature/wip-draft", FEATURES, NO_WIP, False),
        ("feature/wip-a/b", FEATURES, NO_WIP, False),
        ("feature/wip", FEATURES, NO_WIP, True),
        ("feature/wipe", FEATURES, NO_WIP, True),
        ("feature/new-api", FEATURES, NO_WIP, True),
        ("main", INCLUDE_ALL, INCLUDE_ALL, False),
        ("feature/x", ["feature/x"], FEATURES, False),
        ("feature/wip-draft", INCLUDE_ALL, NO_WIP, False),
        ("release/1", INCLUDE_ALL, NO_WIP, True),
        # Any one include suffices.
        ("bugfix/typo", ["feature/*", "bugfix/*"], [], True),
        ("hotfix/typo", ["feature/*", "bugfix/*"], [], False),
        # `?` is exactly one character.
        ("release/1.2", ["release/?.?"], [], True),
        ("release/1.10", ["release/?.?"], [], False),
        # No include matches nothing, exclude or not.
        ("main", [], [], False),
        ("feature/x", [], [], False),
        ("feature/x", [], NO_WIP, False),
    ],
)
def test_which_branches_get_a_preview(
    branch: str, include: list[str], exclude: list[str], expected: bool
) -> None:
    assert matches(branch, include=include, exclude=exclude) is expected
