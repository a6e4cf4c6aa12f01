"""Stand-ins for the controllers that cannot run on a machine without containers.

Each is a SIMULATOR, named as such everywhere it is used: it writes the status the real controller
would write, and nothing else. Kapsa itself runs unchanged against them.

- `KpackSimulator` plays kpack's controller: it builds an Image's commit into a real, runnable
  image the way the Procfile buildpack would (kapsa.sandbox.buildpacks), pushes it to the real
  registry and writes `status.latestImage` with its real digest, or a BuildFailed status.
- `KubeletSimulator` plays the deployment controller, the kubelet and the endpoints controller
  where no node can run (`bench/scale.py`, machines without root or cgroups): it reports a
  Deployment's pods as updated, ready and available and its Service as routing to them.
  Everywhere else a real node runs the pods.
- `CertManagerSimulator` plays cert-manager: it marks ClusterIssuers Ready.

`CommitMessageFailPolicy` decides which simulated builds fail, so a demo or a test can break a
build the way a developer does: by pushing a commit.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kapsa.errors import BuildError
from kapsa.k8s.client import JSON, ApiError, Kube
from kapsa.k8s.informer import Informer
from kapsa.k8s.resources import (
    CLUSTER_ISSUER,
    DEPLOYMENT,
    ENDPOINTS,
    KPACK_IMAGE,
    ResourceType,
)
from kapsa.sandbox.builds import image_of_commit
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer

log = logging.getLogger(__name__)


class Simulator:
    resource: ResourceType

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.informer = Informer(kube, self.resource, on_event=self._on_event)
        self._lock = threading.Lock()

    def start(self) -> Simulator:
        self.informer.start()
        self.informer.wait_synced()
        return self

    def stop(self) -> None:
        self.informer.stop()

    def _on_event(self, event: str, obj: JSON) -> None:
        if event == "DELETED":
            return
        with self._lock:
            try:
                self.handle(obj)
            except ApiError as error:
                if error.status not in (404, 409):
                    log.warning("%s: %s", type(self).__name__, error)

    def handle(self, obj: JSON) -> None:
        raise NotImplementedError

    def _put_status(self, obj: JSON, status: JSON) -> None:
        meta = obj["metadata"]
        body = {**obj, "status": status}
        self.kube.request(
            "PUT",
            self.resource.path(namespace=meta.get("namespace"), name=meta["name"]) + "/status",
            body=body,
        )


FailPolicy = Callable[[JSON], str | None]


def git_dir_of(git_server: GitServer, url: str) -> Path:
    """The bare repository behind `url`, whichever of the sandbox's git servers serves it."""
    return git_server.path_for(url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))


class CommitMessageFailPolicy:
    """Fails the simulated build of a commit whose message carries `BUILD-FAILS: why`.

    Keyed on the commit itself, so whoever pushes states the failure with the push, with no
    race against the operator's poll; `why` becomes the builder's message, as kpack reports it.
    """

    MARKER = "BUILD-FAILS:"

    def __init__(self, git_server: GitServer) -> None:
        self.git_server = git_server

    def __call__(self, image: JSON) -> str | None:
        source = image["spec"]["source"]["git"]
        return self.fails(url=source["url"], revision=source["revision"])

    def fails(self, *, url: str, revision: str) -> str | None:
        """The failure the commit asks for, or None for a build that succeeds."""
        done = subprocess.run(
            [
                "git",
                "--git-dir",
                str(git_dir_of(self.git_server, url)),
                "log",
                "-1",
                "--format=%B",
                revision,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or self.MARKER not in done.stdout:
            return None
        return done.stdout.split(self.MARKER, 1)[1].strip()


class KpackSimulator(Simulator):
    """kpack's controller, simulated. `fail(image)` returns a failure message or None."""

    resource = KPACK_IMAGE

    def __init__(
        self,
        kube: Kube,
        *,
        registry: RegistryServer,
        git_server: GitServer,
        fail: FailPolicy | None = None,
    ) -> None:
        super().__init__(kube)
        self.registries = {registry.server: registry}
        """Where builds push, by the host of the Image's tag, as kpack pushes to what it names."""
        self.git_server = git_server
        self.fail = fail or (lambda _image: None)
        self.hold = threading.Event()
        """While set, builds stay running (Ready=Unknown) so tests can see Building."""
        self.builds = 0

    def release(self) -> None:
        self.hold.clear()
        for image in self.informer.items():
            self._on_event("MODIFIED", image)

    def handle(self, obj: JSON) -> None:
        status = dict(obj.get("status") or {})
        generation = obj["metadata"]["generation"]
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
        done = (
            status.get("observedGeneration") == generation
            and ready
            and ready["status"] != "Unknown"
        )
        if done:
            return
        counter = int(status.get("buildCounter", 0))
        if status.get("observedGeneration") != generation:
            counter += 1
        name = obj["metadata"]["name"]
        status.update(
            observedGeneration=generation,
            buildCounter=counter,
            latestBuildRef=f"{name}-build-{counter}",
            latestBuildReason="COMMIT",
        )
        if self.hold.is_set():
            status["conditions"] = [
                {"type": "Ready", "status": "Unknown", "reason": "BuildRunning", "message": ""}
            ]
            self._put_status(obj, status)
            return
        failure = self.fail(obj)
        image = None
        if not failure:
            source = obj["spec"]["source"]["git"]
            try:
                image = image_of_commit(
                    git_dir_of(self.git_server, source["url"]),
                    source["revision"],
                    labels={"io.buildpacks.project.metadata": _project_metadata(source)},
                )
            except BuildError as error:
                failure = str(error)
        if image is None:
            status["conditions"] = [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "BuildFailed",
                    "message": f"Error: Build '{name}-build-{counter}' in namespace "
                    f"'{obj['metadata']['namespace']}' failed: {failure}",
                }
            ]
        else:
            tags = [obj["spec"]["tag"], *obj["spec"].get("additionalTags", [])]
            digest = ""
            for tag in tags:
                reference, _, tag_name = tag.rpartition(":")
                server, repository = reference.split("/", 1)
                digest = self.registries[server].push(image, repository=repository, tag=tag_name)
            reference = obj["spec"]["tag"].rpartition(":")[0]
            status["latestImage"] = f"{reference}@{digest}"
            status["conditions"] = [
                {"type": "Ready", "status": "True", "reason": "UpToDate", "message": ""}
            ]
        self.builds += 1
        self._put_status(obj, status)


def _project_metadata(source: JSON) -> str:
    """The label kpack's builds carry: where the image came from."""
    return json.dumps(
        {
            "source": {
                "type": "git",
                "version": {"commit": source["revision"]},
                "metadata": {"repository": source["url"]},
            }
        },
        sort_keys=True,
    )


class KubeletSimulator(Simulator):
    """The deployment controller, the kubelet and the endpoints controller, simulated.

    A Deployment's pods come up ready at once, and its Service (of the same name, as Kapsa names
    them) routes to that many made-up pod addresses.
    """

    resource = DEPLOYMENT

    def handle(self, obj: JSON) -> None:
        replicas = int(obj["spec"].get("replicas", 1))
        generation = obj["metadata"]["generation"]
        status = obj.get("status") or {}
        wanted: dict[str, Any] = {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
            ],
        }
        if all(status.get(k) == v for k, v in wanted.items()):
            return
        self._route(obj, replicas)
        self._put_status(obj, wanted)

    def _route(self, deployment: JSON, replicas: int) -> None:
        meta = deployment["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "subsets": [
                {
                    "addresses": [
                        {"ip": f"10.244.{i // 250}.{i % 250 + 2}"} for i in range(replicas)
                    ],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                }
            ]
            if replicas
            else [],
        }
        path = ENDPOINTS.path(namespace=meta["namespace"], name=meta["name"])
        try:
            self.kube.request("PUT", path, body=body)
        except ApiError as error:
            if error.status != 404:
                raise
            self.kube.request("POST", ENDPOINTS.path(namespace=meta["namespace"]), body=body)


class CertManagerSimulator(Simulator):
    """cert-manager's issuer controller, simulated: every ClusterIssuer becomes Ready."""

    resource = CLUSTER_ISSUER

    def handle(self, obj: JSON) -> None:
        generation = obj["metadata"].get("generation", 1)
        for entry in (obj.get("status") or {}).get("conditions", []):
            if entry.get("type") == "Ready" and entry.get("observedGeneration") == generation:
                return
        self._put_status(
            obj,
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "IsReady",
                        "message": "Signing CA verified (simulated)",
                        "observedGeneration": generation,
                    }
                ]
            },
        )
