"""A small typed REST client over the API server.

The official client's generated models cost most of a Python operator's memory and CPU at scale
(deserialising every list into objects), so Kapsa speaks JSON to the API server directly and uses
the `kubernetes` package only to read kubeconfig and in-cluster credentials.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Mapping
from typing import Any, cast
from urllib.parse import urlencode

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import Configuration

from kapsa.errors import ConflictError, KapsaError
from kapsa.k8s.resources import ResourceType

JSON = dict[str, Any]
FIELD_MANAGER = "kapsa"


class ApiError(KapsaError):
    """The API server answered with an error status."""

    def __init__(self, *, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(ApiError):
    pass


class GoneError(ApiError):
    """410: a watch's resourceVersion is too old; list again."""


def load_configuration(kubeconfig: str | None = None) -> Configuration:
    """A kubeconfig file when given, else in-cluster credentials, else ~/.kube/config."""
    configuration = Configuration()
    if kubeconfig:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
        return configuration
    try:
        kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except kube_config.ConfigException:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    return configuration


class Kube:
    """JSON over HTTPS to one API server, with a request counter for the benchmarks."""

    def __init__(self, configuration: Configuration, *, qps_pool: int = 32) -> None:
        self.host = configuration.host.rstrip("/")
        self._headers: dict[str, str] = {"Accept": "application/json"}
        token = configuration.api_key.get("authorization") or configuration.api_key.get(
            "BearerToken"
        )
        if token:
            prefix = configuration.api_key_prefix.get("authorization", "")
            self._headers["Authorization"] = f"{prefix} {token}".strip()
            if not self._headers["Authorization"].lower().startswith("bearer"):
                self._headers["Authorization"] = f"Bearer {token}"
        if configuration.username and configuration.password:
            self._headers.update(
                urllib3.make_headers(
                    basic_auth=f"{configuration.username}:{configuration.password}"
                )
            )
        pool_args: dict[str, Any] = {"maxsize": qps_pool, "block": False}
        if configuration.verify_ssl:
            pool_args["cert_reqs"] = ssl.CERT_REQUIRED
            if configuration.ssl_ca_cert:
                pool_args["ca_certs"] = configuration.ssl_ca_cert
        else:
            pool_args["cert_reqs"] = ssl.CERT_NONE
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        if configuration.cert_file:
            pool_args["cert_file"] = configuration.cert_file
            pool_args["key_file"] = configuration.key_file
        self._pool = urllib3.PoolManager(**pool_args)
        #: Requests by verb, for the figures a benchmark prints.
        self.requests: dict[str, int] = {}

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None) -> Kube:
        return cls(load_configuration(kubeconfig))

    # -- the raw request ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        response = self._send(
            method, path, query=query, body=data, headers=headers, timeout=timeout
        )
        return _decode(response.status, response.data)

    def text(self, path: str, *, query: Mapping[str, str] | None = None) -> str:
        """A GET whose answer is text, not JSON: a container's log (`.../pods/<name>/log`)."""
        response = self._send("GET", path, query=query, headers=self._headers, timeout=60.0)
        if not 200 <= response.status < 300:
            _decode(response.status, response.data)  # raises the API's error
        return bytes(response.data).decode("utf-8", "replace")

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None,
        headers: Mapping[str, str],
        timeout: float,
        body: bytes | None = None,
    ) -> urllib3.BaseHTTPResponse:
        self.requests[method] = self.requests.get(method, 0) + 1
        try:
            return self._pool.request(
                method,
                self.host + path + (f"?{urlencode(query)}" if query else ""),
                body=body,
                headers=dict(headers),
                timeout=urllib3.Timeout(connect=5.0, read=timeout),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as error:
            raise ApiError(status=0, reason="Unreachable", message=str(error)) from error

    def stream(self, path: str, *, query: Mapping[str, str], timeout: float) -> Iterator[JSON]:
        """The events of one watch request, one JSON object per line."""
        self.requests["WATCH"] = self.requests.get("WATCH", 0) + 1
        try:
            response = self._pool.request(
                "GET",
                self.host + path,
                fields=dict(query),
                headers=self._headers,
                preload_content=False,
                timeout=urllib3.Timeout(connect=5.0, read=timeout),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as error:
            raise ApiError(status=0, reason="Unreachable", message=str(error)) from error
        try:
            if response.status != 200:
                _decode(response.status, response.read())
            buffer = b""
            for chunk in response.stream(64 * 1024):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield cast(JSON, json.loads(line))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(status=0, reason="StreamBroken", message=str(error)) from error
        finally:
            response.release_conn()

    # -- typed verbs ---------------------------------------------------------------------------

    def get(
        self, resource: ResourceType, name: str, *, namespace: str | None = None
    ) -> JSON | None:
        try:
            return self.request("GET", resource.path(namespace=namespace, name=name))
        except NotFoundError:
            return None

    def list(
        self,
        resource: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> JSON:
        query = {"labelSelector": label_selector} if label_selector else {}
        if field_selector:
            query["fieldSelector"] = field_selector
        return self.request("GET", resource.path(namespace=namespace), query=query or None)

    def create(self, resource: ResourceType, body: JSON) -> JSON:
        namespace = body["metadata"].get("namespace")
        return self.request("POST", resource.path(namespace=namespace), body=body)

    def apply(self, resource: ResourceType, body: JSON) -> JSON:
        """Server-side apply: Kapsa owns the fields it sets and nothing else."""
        meta = body["metadata"]
        return self.request(
            "PATCH",
            resource.path(namespace=meta.get("namespace"), name=meta["name"]),
            body=body,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def merge_patch(
        self,
        resource: ResourceType,
        name: str,
        patch: JSON,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> JSON:
        path = resource.path(namespace=namespace, name=name)
        if subresource:
            path += f"/{subresource}"
        return self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    def replace_status(self, resource: ResourceType, body: JSON) -> JSON:
        """PUT /status carrying metadata.resourceVersion: a lost race is a ConflictError."""
        meta = body["metadata"]
        path = resource.path(namespace=meta.get("namespace"), name=meta["name"]) + "/status"
        try:
            return self.request("PUT", path, body=body)
        except ApiError as error:
            if error.status == 409:
                raise ConflictError(error.message) from error
            raise

    def delete(
        self,
        resource: ResourceType,
        name: str,
        *,
        namespace: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        try:
            self.request(
                "DELETE",
                resource.path(namespace=namespace, name=name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": propagation,
                },
            )
        except NotFoundError:
            return False
        return True


def _decode(status: int, data: bytes) -> JSON:
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        payload = {"message": data[:500].decode(errors="replace")}
    if 200 <= status < 300:
        return cast(JSON, payload)
    reason = str(payload.get("reason", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else str(payload)
    error_type: type[ApiError] = ApiError
    if status == 404:
        error_type = NotFoundError
    elif status == 410:
        error_type = GoneError
    raise error_type(status=status, reason=reason, message=message)
