"""Generated Project specs through the real API server and the real operator.

Each one is either refused by the schema, with a message naming a field, or accepted and then
handled by the operator: the Project gets a status for its generation (a condition says what is
wrong, if anything) and the operator never crashes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kapsa.controlplane import ControlPlane
from tests.e2e.harness import DOMAIN_POOL, REGISTRY, OperatorProcess, get
from tests.waiting import wait_until


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> Any:
    """Valid values three times in four, so that many specs get past the schema too."""
    return st.one_of(valid, valid, valid, invalid)


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
URLS = st.one_of(
    st.sampled_from(
        [
            "https://git.corp.example/app.git",
            "ext::sh -c touch% /tmp/pwned",
            "-uhttps://x",
            "file:///etc",
            "git://127.0.0.1:1/none.git",
            "https://user:pw@host/x.git",
            "ssh://git@127.0.0.1:1/x.git",
            "http://127.0.0.1:1/x",
            "",
            " ",
        ]
    ),
    TEXT,
)
DURATIONS = mostly(
    st.sampled_from(["5m", "1h30m", "0s", "90s"]),
    st.one_of(st.sampled_from(["7d", "5 minutes"]), TEXT),
)
NAMES = mostly(
    st.sampled_from(["dev", "prod", "qa"]),
    st.one_of(st.sampled_from(["Dev", "-x", "a" * 45, ""]), TEXT),
)
ENVIRONMENT = st.fixed_dictionaries(
    {"name": NAMES, "branch": mostly(st.sampled_from(["main", "feature/x"]), TEXT)},
    optional={
        "autoSync": st.booleans(),
        "secretRefs": st.lists(st.fixed_dictionaries({"name": NAMES}), max_size=2),
    },
)
SPECS = st.fixed_dictionaries(
    {
        "source": st.fixed_dictionaries(
            {"git": st.fixed_dictionaries({"url": URLS})}, optional={"pollInterval": DURATIONS}
        ),
        "build": st.fixed_dictionaries(
            {
                "registryRef": st.fixed_dictionaries({"name": st.sampled_from([REGISTRY, "nope"])}),
                "repository": st.one_of(st.just("apps/fuzz"), TEXT),
            },
            optional={
                "strategy": mostly(
                    st.sampled_from(["auto", "buildpacks", "dockerfile"]), st.just("kaniko")
                )
            },
        ),
        "domainPoolRef": st.fixed_dictionaries({"name": st.sampled_from([DOMAIN_POOL, "none"])}),
        "environments": st.lists(ENVIRONMENT, max_size=3),
    },
    optional={
        "app": st.fixed_dictionaries(
            {},
            optional={
                "port": st.integers(min_value=-5, max_value=70000),
                "replicas": st.integers(-1, 200),
            },
        ),
        "previewEnvironments": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "include": st.lists(TEXT, max_size=2),
                "ttl": DURATIONS,
                "maxCount": st.integers(-1, 2000),
            },
        ),
    },
)


def test_generated_specs_are_refused_with_a_reason_or_handled(
    control_plane: ControlPlane, operator: OperatorProcess
) -> None:
    tried = {"refused": 0, "handled": 0}

    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(spec=SPECS)
    def check(spec: dict[str, Any]) -> None:
        name = f"fuzz-{sum(tried.values())}"
        document = {
            "apiVersion": "kapsa.io/v1alpha1",
            "kind": "Project",
            "metadata": {"name": name},
            "spec": spec,
        }
        applied = control_plane.kubectl(
            "apply", "--validate=false", "-f", "-", input=json.dumps(document), check=False
        )
        if applied.returncode != 0:
            tried["refused"] += 1
            assert re.search(r"spec\.[A-Za-z.\[\]0-9]+", applied.stderr), applied.stderr
            return
        tried["handled"] += 1
        project = get(control_plane, "project", name)
        generation = project["metadata"]["generation"]
        wait_until(
            lambda: (
                (get(control_plane, "project", name) or {})
                .get("status", {})
                .get("observedGeneration")
                == generation
            ),
            timeout=30,
            message=lambda: f"the operator handled {spec!r}\n{operator.tail()}",
        )
        assert operator.process is not None and operator.process.poll() is None
        control_plane.kubectl("delete", "project", name, "--wait=false")

    check()
    assert operator.process is not None and operator.process.poll() is None
    assert "Traceback" not in operator.log.read_text()
    assert tried["refused"] > 0 and tried["handled"] > 0, tried
    print(
        f"generated specs: {tried['refused']} refused by the schema, "
        f"{tried['handled']} handled by the operator"
    )
