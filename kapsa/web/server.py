"""The operator's one HTTP port: probes, metrics, push webhooks and the ledger, read-only.

One port because each extra port is one more Service entry, NetworkPolicy rule and
port-forward for users to get right. Only `/webhooks/` needs to be reachable from outside the
cluster; route just that prefix through an Ingress and keep the rest behind port-forward.

The standard library's ThreadingHTTPServer is enough for probes, a scrape every few seconds and
the odd webhook, and adds no dependency. Everything it receives arrives through a `Request` and
leaves as a `Response` (kapsa.web.messages); this module alone touches sockets.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import cast
from urllib.parse import parse_qsl, unquote, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from kapsa import metrics
from kapsa.errors import KapsaError
from kapsa.ledger import Ledger
from kapsa.lifecycle import Service
from kapsa.web.ledger_api import LedgerApi
from kapsa.web.messages import Request, Response, error, text
from kapsa.web.webhooks import MAX_BODY, Webhooks

log = logging.getLogger(__name__)

#: A client that sends headers or a body slower than this holds a thread; cut it off.
REQUEST_TIMEOUT = 10.0
#: A refused body is read and dropped up to this size, so the client gets the answer instead of
#: a connection reset; beyond it the connection is just closed.
DRAIN_LIMIT = 8 * MAX_BODY


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Body:
    """The request body, read at most up to what the client declared and the caller allows."""

    def __init__(self, stream: BufferedIOBase, declared: int | None) -> None:
        self._stream = stream
        self.remaining = declared or 0

    def read(self, limit: int) -> bytes:
        size = min(limit, self.remaining)
        data = self._stream.read(size) if size > 0 else b""
        self.remaining -= len(data)
        if len(data) < size:
            self.remaining = 0  # the client closed early: nothing more will come
        return data

    def drain(self) -> None:
        while self.remaining > 0:
            if not self.read(64 * 1024):
                return


class _Handler(BaseHTTPRequestHandler):
    server_version = "kapsa"
    sys_version = ""
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        app = cast(_Server, self.server).app
        declared = self._declared_length()
        body = _Body(self.rfile, declared if declared is not None and declared >= 0 else 0)
        if declared is not None and declared < 0:
            response = error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        else:
            response = app.respond(self._request(declared, body))
        drainable = body.remaining <= DRAIN_LIMIT
        self._write(response, close=body.remaining > 0)
        if body.remaining and drainable:
            try:
                self.connection.settimeout(2.0)
                body.drain()
            except OSError:
                pass

    def _declared_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        value = value.strip()
        # Digits only: int() would also take "+1", "1_000" and " 1 ", which proxies read otherwise.
        return int(value) if value.isascii() and value.isdigit() else -1

    def _request(self, declared: int | None, body: _Body) -> Request:
        url = urlsplit(self.path)
        segments = tuple(unquote(part) for part in url.path.split("/") if part)
        return Request(
            method=self.command,
            segments=segments,
            query=dict(parse_qsl(url.query)),
            headers={name.lower(): value for name, value in self.headers.items()},
            remote=self.client_address[0],
            content_length=declared,
            read_body=body.read,
        )

    def _write(self, response: Response, *, close: bool) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        # Probes and scrapes every few seconds would drown the operator's own log lines.
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, _request: object, client_address: tuple[str, int]) -> None:
        # A client gone mid-answer is routine; the default prints a traceback to stderr.
        log.debug("connection from %s failed", client_address[0], exc_info=True)

    def __init__(self, address: tuple[str, int], app: _App) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, _Handler)


class _App:
    """The routes, as functions from a Request to a Response."""

    def __init__(
        self,
        *,
        webhooks: Webhooks,
        ledger_api: LedgerApi,
        ready: Callable[[], bool],
        registry: CollectorRegistry,
    ) -> None:
        self._webhooks = webhooks
        self._ledger_api = ledger_api
        self._ready = ready
        self._registry = registry

    def respond(self, request: Request) -> Response:
        try:
            return self._route(request)
        except Exception:
            log.exception("%s /%s failed", request.method, "/".join(request.segments)[:200])
            return error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the operator log")

    def _route(self, request: Request) -> Response:
        method, query = request.method, request.query
        handler: Callable[[], Response]
        match request.segments:
            case ("healthz",):
                allowed, handler = "GET", lambda: text(HTTPStatus.OK, "ok")
            case ("readyz",):
                allowed, handler = "GET", self._readyz
            case ("metrics",):
                allowed, handler = "GET", lambda: self._metrics(request)
            case ("webhooks", project):
                allowed, handler = "POST", lambda: self._webhooks.handle(project, request=request)
            case ("api", "v1", "history", project):
                allowed, handler = "GET", lambda: self._ledger_api.history(project, query=query)
            case ("api", "v1", "deployments", project, env):
                allowed, handler = "GET", lambda: self._ledger_api.deployments(project, env=env)
            case ("api", "v1", "at", project, env):
                allowed, handler = "GET", lambda: self._ledger_api.at(project, env=env, query=query)
            case _:
                return error(HTTPStatus.NOT_FOUND, "no such path")
        if method != allowed:
            return Response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"use {allowed}\n".encode(),
                headers={"Allow": allowed},
            )
        return handler()

    def _readyz(self) -> Response:
        try:
            ready = self._ready()
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            ready = False
        if ready:
            return text(HTTPStatus.OK, "ok")
        return text(HTTPStatus.SERVICE_UNAVAILABLE, "not ready")

    def _metrics(self, request: Request) -> Response:
        # Prometheus asks for OpenMetrics when it can; anything else gets the text format.
        encoder, content_type = choose_encoder(request.header("accept") or "")
        return Response(HTTPStatus.OK, encoder(self._registry), content_type)


class WebServer(Service):
    """The operator's HTTP server, on a background thread; dependencies come in as callables.

    `trigger_poll(project)` must return quickly (enqueue, do not list branches in the request),
    say False for a project it does not know, and raise KapsaError when it cannot poll now
    (a replica standing by): the sender then sees 503 and may redeliver.
    `webhook_secret(project)` is the token of the Project's webhookSecretRef, None when it has
    none or the project is unknown. `ready()` is the readiness probe's answer.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int = 8080,
        ledger: Ledger | None,
        trigger_poll: Callable[[str], bool],
        webhook_secret: Callable[[str], bytes | None],
        ready: Callable[[], bool],
        clock: Callable[[], datetime] = _utcnow,
        registry: CollectorRegistry = metrics.REGISTRY,
        replay_window: timedelta = timedelta(hours=24),
        replay_capacity: int = 10_000,
    ) -> None:
        self._host = host
        self._port = port
        self._app = _App(
            webhooks=Webhooks(
                trigger_poll=trigger_poll,
                webhook_secret=webhook_secret,
                clock=clock,
                replay_window=replay_window,
                replay_capacity=replay_capacity,
            ),
            ledger_api=LedgerApi(ledger=ledger, clock=clock),
            ready=ready,
            registry=registry,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started (a free one when asked for port 0)."""
        return self._server.server_address[1] if self._server is not None else self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host  # noqa: S104
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        try:
            self._server = _Server((self._host, self._port), self._app)
        except OSError as exc:
            raise KapsaError(f"cannot listen on {self._host}:{self._port}: {exc}") from exc
        # How soon stop() returns; twenty idle wake-ups a second cost nothing measurable.
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http", kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("serving HTTP on %s:%s", self._host, self.port)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None
