"""The operator image and its Deployment fit each other and the `kapsa operator` command.

No container runtime here, so the Dockerfile is read rather than built; the Deployment's
arguments and environment are parsed by the real command-line parser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, cast

import pytest
import typer

from kapsa.cli import app, commands  # noqa: F401  (registers the sub-commands)
from kapsa.ledger.engine import sqlite_path
from tests.deploy.layout import OPERATOR_MANIFEST, REPO, load_all

PG_URL = "postgresql+psycopg://kapsa:pw@postgres.corp.com:5432/kapsa"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and line[0] != "#")
    ]


def _deployment() -> dict[str, Any]:
    return next(d for d in load_all(OPERATOR_MANIFEST) if d["kind"] == "Deployment")


def test_the_image_installs_kapsa_and_git_and_runs_kapsa_as_non_root() -> None:
    steps = _instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [rest for word, rest in steps if word == "RUN"]
    assert any(re.search(r"apt-get install .*\bgit\b", run) for run in runs)
    assert any(re.search(r"pip install (--\S+ )*\.(\s|$)", run) for run in runs)
    users = [i for i, (word, _) in enumerate(steps) if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = steps[users[-1]][1].split(":")[0]
    assert user.isdigit() and user != "0", "a numeric non-root uid, which runAsNonRoot can check"
    last_run = max(i for i, (word, _) in enumerate(steps) if word == "RUN")
    assert users[-1] > last_run
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["kapsa"]
    pod = _deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(user)


class _Group(Protocol):
    """The parts of a command group used here (typer ships its own click)."""

    def make_context(self, info_name: str, args: list[str], **extra: Any) -> Any: ...

    def get_command(self, ctx: Any, cmd_name: str) -> Any: ...


def _operator_options(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, Any]:
    """The options `kapsa <args>` would run with, given the container's environment."""
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    for name in ("KAPSA_LEDGER_URL", "KAPSA_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    group = cast(_Group, typer.main.get_command(app))
    args = container["args"]
    parent = group.make_context("kapsa", list(args), resilient_parsing=True)
    command = group.get_command(parent, args[0])
    assert command is not None
    params: dict[str, Any] = command.make_context(args[0], list(args[1:]), parent=parent).params
    return params


def _mounts() -> list[PurePosixPath]:
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    return [PurePosixPath(m["mountPath"]) for m in container["volumeMounts"]]


def test_without_the_ledger_secret_the_ledger_is_sqlite_on_the_volume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = _operator_options(monkeypatch, {"KAPSA_NAMESPACE": "kapsa-system"})
    path = sqlite_path(options["ledger"])
    assert path is not None
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in _deployment()["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert claims[mounted[str(Path(path).parent)]] == "kapsa-ledger"


def test_the_ledger_secret_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    source = next(e for e in container["env"] if e["name"] == "KAPSA_LEDGER_URL")
    assert source["valueFrom"]["secretKeyRef"] == {
        "name": "kapsa-ledger",
        "key": "url",
        "optional": True,
    }
    options = _operator_options(monkeypatch, {"KAPSA_LEDGER_URL": PG_URL})
    assert options["ledger"] == PG_URL


def test_every_path_the_operator_writes_is_a_mounted_volume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    options = _operator_options(monkeypatch, {})
    ledger = sqlite_path(options["ledger"])
    assert ledger is not None
    for path in (
        PurePosixPath(str(options["git_cache"])),
        PurePosixPath(str(ledger)),
        PurePosixPath("/tmp"),
    ):
        assert any(path == m or m in path.parents for m in _mounts()), path


def test_the_namespace_comes_from_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    source = next(e for e in container["env"] if e["name"] == "KAPSA_NAMESPACE")
    assert source["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert _operator_options(monkeypatch, {"KAPSA_NAMESPACE": "ops"})["namespace"] == "ops"
