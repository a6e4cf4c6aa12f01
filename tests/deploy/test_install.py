"""Installing Kapsa as the platform admin does, on a real API server with RBAC enforced.

The permission rows come from the tables in docs/platform-admin.md (see layout.py): the guide,
the manifest and the API server's answers are held to each other.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from kapsa.controlplane import ControlPlane
from kapsa.k8s import resources
from kapsa.registry.credentials import credentials_from_secret
from tests.attacks import report_attack
from tests.deploy.layout import (
    APPLIED_BUNDLES,
    APPLIED_EXAMPLES,
    DEPLOY,
    EXAMPLES,
    GUIDE,
    NAMESPACE,
    OPERATOR_MANIFEST,
    PARSED_EXAMPLES,
    REPO,
    SERVICE_ACCOUNT,
    Permission,
    documented_permissions,
    documented_refusals,
    granted_permissions,
    load_all,
)
from tests.plugins.cluster import Kubectl

DOCUMENTED = sorted(documented_permissions(GUIDE.read_text()))
REFUSED = documented_refusals(GUIDE.read_text())


@pytest.fixture(scope="module")
def installed(kubectl: Kubectl) -> Kubectl:
    """`kubectl apply -k deploy/`, the one command of the guide's install step."""
    kubectl("apply", "-k", str(DEPLOY))
    return kubectl


def _can_i(kubectl: Kubectl, args: list[str]) -> str:
    out = kubectl("auth", "can-i", *args, f"--as={SERVICE_ACCOUNT}", check=False)
    answer = out.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {args}: {out.stdout}{out.stderr}"
    return answer


def _answers(kubectl: Kubectl, questions: list[list[str]]) -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda args: _can_i(kubectl, args), questions))
    return {" ".join(q): a for q, a in zip(questions, answers, strict=True)}


def test_apply_k_installs_the_crds_and_the_operator(installed: Kubectl) -> None:
    built = installed("kustomize", str(DEPLOY)).stdout
    wanted = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(built) if doc}
    live = installed("get", "-k", str(DEPLOY), "-o", "json").stdout
    found = {(item["kind"], item["metadata"]["name"]) for item in json.loads(live)["items"]}
    assert found == wanted
    assert ("CustomResourceDefinition", "registries.kapsa.io") in found
    assert ("Deployment", "kapsa") in found
    deployment = json.loads(
        installed("-n", NAMESPACE, "get", "deployment", "kapsa", "-o", "json").stdout
    )
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_apply_k_equals_the_two_step_install_of_the_guide(kubectl: Kubectl) -> None:
    """`apply -k deploy/` is `apply -k crds/` plus the self-sufficient operator manifest."""

    def built(path: Path) -> list[str]:
        out = kubectl("kustomize", str(path)).stdout
        return [json.dumps(doc, sort_keys=True) for doc in yaml.safe_load_all(out) if doc]

    operator = [json.dumps(doc, sort_keys=True) for doc in load_all(OPERATOR_MANIFEST)]
    generated = [
        json.dumps(doc, sort_keys=True)
        for path in (REPO / "crds").glob("kapsa.io_*.yaml")
        for doc in load_all(path)
    ]
    assert sorted(built(REPO / "crds")) == sorted(generated)
    assert sorted(built(DEPLOY)) == sorted(generated + operator)


@pytest.mark.parametrize("how", ["-f", "-k"])
def test_crds_folder_applies_with_f_and_with_k(kubectl: Kubectl, how: str) -> None:
    applied = kubectl("apply", how, str(REPO / "crds"), "--dry-run=server", "-o", "name")

    assert sorted(applied.stdout.split()) == [
        f"customresourcedefinition.apiextensions.k8s.io/{plural}.kapsa.io"
        for plural in ("domainpools", "environments", "projects", "registries")
    ]


def test_the_manifest_grants_exactly_the_documented_permissions() -> None:
    assert granted_permissions(load_all(OPERATOR_MANIFEST)) == set(DOCUMENTED)


def test_every_resource_kapsa_talks_to_has_a_documented_permission() -> None:
    named = [v for v in vars(resources).values() if isinstance(v, resources.ResourceType)]
    covered = {(p.group, p.resource) for p in DOCUMENTED}
    assert [r.plural for r in named if (r.group, r.plural) not in covered] == []


def test_the_service_account_has_every_documented_permission(installed: Kubectl) -> None:
    answers = _answers(installed, [p.can_i() for p in DOCUMENTED])
    assert {q: a for q, a in answers.items() if a != "yes"} == {}


def test_the_service_account_is_refused_everything_it_does_not_need(
    installed: Kubectl,
) -> None:
    namespaced = [p for p in DOCUMENTED if p.where != "cluster"]
    elsewhere = [
        Permission(p.group, p.resource, p.verb, p.name, "default").can_i() for p in namespaced
    ]
    answers = _answers(installed, REFUSED + elsewhere)
    assert {q: a for q, a in answers.items() if a != "no"} == {}
    report_attack(9, f"{len(answers)} rights the operator does not need", refused_as="RBAC")


def _contains(outer: Any, inner: Any) -> bool:
    """Whether every value written in `inner` survived in `outer` (defaults may be added)."""
    if isinstance(inner, dict):
        return isinstance(outer, dict) and all(
            k in outer and _contains(outer[k], v) for k, v in inner.items()
        )
    if isinstance(inner, list):
        return (
            isinstance(outer, list)
            and len(outer) == len(inner)
            and all(_contains(o, i) for o, i in zip(outer, inner, strict=True))
        )
    return bool(outer == inner)


@pytest.mark.parametrize("name", APPLIED_EXAMPLES)
def test_example_is_accepted_whole_by_the_api_server(kubectl: Kubectl, name: str) -> None:
    (written,) = load_all(EXAMPLES / name)
    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", str(EXAMPLES / name))
    stored = json.loads(out.stdout)
    assert (stored["apiVersion"], stored["kind"]) == (written["apiVersion"], written["kind"])
    # A field the CRD does not know would be pruned silently: the spec must come back whole.
    assert _contains(stored["spec"], written["spec"]), json.dumps(stored["spec"], indent=1)


@pytest.mark.parametrize("name", APPLIED_BUNDLES)
def test_bundle_is_accepted_by_the_api_server(kubectl: Kubectl, name: str) -> None:
    written = load_all(EXAMPLES / name)
    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", str(EXAMPLES / name))
    stored = json.loads(out.stdout)
    items = stored["items"] if stored.get("kind") == "List" else [stored]
    assert [(i["kind"], i["metadata"]["name"]) for i in items] == [
        (w["kind"], w["metadata"]["name"]) for w in written
    ]


@pytest.mark.parametrize("name", sorted(PARSED_EXAMPLES))
def test_example_of_a_kind_not_installed_here_parses(name: str) -> None:
    (doc,) = load_all(EXAMPLES / name)
    assert (doc["apiVersion"], doc["kind"]) == PARSED_EXAMPLES[name]


def test_the_external_secret_makes_the_secret_the_example_project_names() -> None:
    (external,) = load_all(EXAMPLES / "external-secret.yaml")
    (project,) = load_all(EXAMPLES / "project.yaml")
    prod = next(e for e in project["spec"]["environments"] if e["name"] == "prod")
    assert {"name": external["spec"]["target"]["name"]} in prod["secretRefs"]
    assert external["metadata"]["namespace"] == project["metadata"]["name"]


def test_registry_secret_script_makes_credentials_kapsa_can_use(
    installed: Kubectl, control_plane: ControlPlane, tmp_path: Path
) -> None:
    binary = control_plane.assets.kubectl or shutil.which("kubectl")
    assert binary is not None
    env = {
        **os.environ,
        "PATH": f"{Path(binary).parent}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(control_plane.kubeconfig),
        "HARBOR_PUSH_TOKEN": "s3cr3t-token",
        "HOME": str(tmp_path),
    }
    script = str(EXAMPLES / "registry-secret.sh")
    try:
        subprocess.run(["sh", script], env=env, check=True, capture_output=True, text=True)
        secret = json.loads(
            installed(
                "-n", NAMESPACE, "get", "secret", "harbor-push-credentials", "-o", "json"
            ).stdout
        )
    finally:
        installed(
            "-n", NAMESPACE, "delete", "secret", "harbor-push-credentials", "--ignore-not-found"
        )
    (registry,) = load_all(EXAMPLES / "registry.yaml")
    ref = registry["spec"]["credentialsSecretRef"]
    assert (ref["name"], ref["namespace"]) == ("harbor-push-credentials", NAMESPACE)
    credentials = credentials_from_secret(
        secret_type=secret["type"],
        data={k: base64.b64decode(v) for k, v in secret["data"].items()},
        server=registry["spec"]["server"],
    )
    assert (credentials.username, credentials.password) == ("robot$kapsa", "s3cr3t-token")


def test_registry_secret_script_refuses_to_run_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HARBOR_PUSH_TOKEN"}
    out = subprocess.run(
        ["sh", str(EXAMPLES / "registry-secret.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert "HARBOR_PUSH_TOKEN" in out.stderr
