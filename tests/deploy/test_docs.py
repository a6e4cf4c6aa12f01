"""The platform admin's guide names only files that exist and applies only files the tests apply."""

from __future__ import annotations

import re

from tests.deploy.layout import GUIDE, REPO, applied_by_tests

TEXT = GUIDE.read_text()
#: A repository path: starts with one of the top folders (or is the Dockerfile), not part of a URL.
PATH = re.compile(r"(?<![\w./:-])((?:deploy|crds|docs|kapsa|tests)/[\w./-]*|Dockerfile)")


def test_every_path_the_guide_mentions_exists() -> None:
    mentioned = {m.rstrip("./") or m for m in PATH.findall(TEXT)}
    assert "deploy/kapsa-operator.yaml" in mentioned
    assert sorted(p for p in mentioned if not (REPO / p).exists()) == []


def test_every_file_the_guide_applies_is_applied_by_the_tests() -> None:
    applied = set(re.findall(r"kubectl apply -f (deploy/\S+)", TEXT))
    assert "deploy/examples/registry.yaml" in applied
    assert sorted(applied - applied_by_tests()) == []


def test_the_guide_installs_with_the_command_the_tests_run() -> None:
    assert "kubectl apply -k deploy/" in TEXT
