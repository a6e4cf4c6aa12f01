"""docs/quickstart.md's real-cluster path, step by step, with the example Project as shipped."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from kapsa.controlplane import ControlPlane
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from tests.e2e.harness import SAMPLE_APP, OperatorProcess, condition, get
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "docs" / "quickstart.md"
EXAMPLE = REPO / "deploy" / "examples" / "project.yaml"


def _developer_steps() -> list[str]:
    """The kubectl lines of the quickstart's developer steps, in order."""
    page = QUICKSTART.read_text(encoding="utf-8")
    section = page[page.index("Then, as a developer") :]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line.startswith("kubectl")]


def test_the_quickstart_creates_what_the_example_project_needs_and_it_runs(
    control_plane: ControlPlane,
    git_server: GitServer,
    registry_server: RegistryServer,
    operator: OperatorProcess,
) -> None:
    project = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    name = project["metadata"]["name"]
    repository = "quickstart-api"  # other tests run a Project `api` of their own repository
    git_server.create_repo(repository, files=SAMPLE_APP)
    # The edit the quickstart asks for: the repository's URL; this one needs no credentials.
    project["spec"]["source"]["git"] = {"url": git_server.url_for(repository)}
    project["spec"]["source"]["pollInterval"] = "1s"

    steps = _developer_steps()
    secrets = [s for s in steps if " create secret generic api-secrets-" in s]
    assert len(secrets) == 2, steps
    needed = {
        ref["name"] for env in project["spec"]["environments"] for ref in env.get("secretRefs", [])
    }
    assert {re.search(r"api-secrets-\w+", s).group(0) for s in secrets} == needed  # type: ignore[union-attr]

    # A namespace `api` left by an earlier test's Project must be gone: Kapsa adopts none.
    wait_until(
        lambda: get(control_plane, "namespace", name) is None,
        timeout=120,
        message=f"an earlier namespace {name} gone",
    )
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(project))
    wait_until(
        lambda: get(control_plane, "namespace", name),
        timeout=60,
        message=lambda: f"namespace {name}\n{operator.tail()}",
    )
    for step in secrets:
        control_plane.kubectl(*step.split()[1:])
    control_plane.kubectl("wait", "--for=condition=Ready", f"project/{name}", "--timeout=120s")
    assert condition(get(control_plane, "project", name), "Ready")["status"] == "True"
    for env in ("dev", "prod"):
        environment = get(control_plane, "-n", name, "environment", env)
        assert environment["status"]["phase"] == "Running"
    control_plane.kubectl("delete", "project", name, "--wait=false")
