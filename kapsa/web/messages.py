"""Requests and responses as plain values, apart from the socket code.

The routes (webhooks, ledger API, probes) then read like functions from a request to a response,
and the HTTP glue in kapsa.web.server alone deals with sockets, draining and timeouts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

#: Kubernetes object names (DNS-1123 subdomains). Anything else cannot name a Project or an
#: Environment, so it is refused before it reaches a callback, a log line or a query.
NAME_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
NAME_MAX = 253
_NAME = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and _NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Request:
    method: str
    segments: tuple[str, ...]
    """The path, split on `/` and percent-decoded segment by segment."""
    query: Mapping[str, str]
    headers: Mapping[str, str]
    """Lower-cased names."""
    remote: str
    content_length: int | None
    """As declared; None when the client sent no Content-Length."""
    read_body: Callable[[int], bytes] = field(repr=False)
    """Reads at most n bytes of the body: the caller decides the cap, not the client."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


def json_response(status: HTTPStatus, data: Any) -> Response:
    body = json.dumps(data, indent=None, separators=(",", ":")).encode() + b"\n"
    return Response(status, body, "application/json")


def error(status: HTTPStatus, message: str) -> Response:
    """Every refusal answers `{"error": ...}`, so a script reads one shape whatever went wrong."""
    return json_response(status, {"error": message})


def text(status: HTTPStatus, message: str) -> Response:
    return Response(status, f"{message}\n".encode())
