"""The operator's HTTP listeners: one facing the cluster, one for the operator's readers.

The public listener (port `http`) serves only what kubelet and git hosts need: `/healthz`,
`/readyz` and `/webhooks/`. The internal listener serves `/metrics` and the read-only ledger API
(`/api/v1/`): bound to loopback by default, reached with `kubectl port-forward`; bound to the pod
network only with a KubeAuthorizer (kapsa.web.auth) checking every caller's bearer token.

Each listener takes at most `max_connections` requests at once (the next ones get 503 at once,
costing no thread) and gives each connection `request_deadline` seconds in total, however slowly
its client trickles bytes. The standard library's ThreadingHTTPServer is enough for probes, a
scrape every few seconds and the odd webhook, and adds no dependency. Everything it receives
arrives through a `Request` and leaves as a `Response` (kapsa.web.messages); this module alone
touches sockets.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from kapsa import metrics
from kapsa.errors import KapsaError
from kapsa.ledger import Ledger
from kapsa.lifecycle import Service
from kapsa.web.auth import Access, KubeAuthorizer
from kapsa.web.ledger_api import LedgerApi
from kapsa.web.messages import Request, Response, error, text
from kapsa.web.webhooks import MAX_BODY, Webhooks

log = logging.getLogger(__name__)

#: A client that sends headers or a body slower than this holds a thread; cut it off.
REQUEST_TIMEOUT = 10.0
#: And one that sends a byte just often enough is cut off this long after it connected.
REQUEST_DEADLINE = 30.0
#: Requests served at once per listener; more are answered 503 without a thread.
MAX_CONNECTIONS = 64
#: The first path segments each listener serves.
PUBLIC_ROUTES = frozenset({"healthz", "readyz", "webhooks"})
INTERNAL_ROUTES = frozenset({"healthz", "metrics", "api"})
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\n\r\n"
    b'{"error":"too many requests at once; try again"}\n'
)
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

    def __init__(
        self, address: tuple[str, int], app: _App, *, max_connections: int, deadline: float
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._slots = threading.BoundedSemaphore(max_connections)
        self._deadline = deadline
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the request if a slot is free; else 503 now, from this thread."""
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
                # Take in the request line the client is sending, so that closing does not
                # reset the connection before it read the answer; a moment at most.
                request.settimeout(0.05)
                request.recv(65536)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # Past the deadline the socket is shut, so any read or write of the handler fails.
        cutoff = threading.Timer(self._deadline, _shut, args=(request,))
        cutoff.daemon = True
        cutoff.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            cutoff.cancel()
            self._slots.release()


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class _App:
    """The routes, as functions from a Request to a Response."""

    def __init__(
        self,
        *,
        webhooks: Webhooks,
        ledger_api: LedgerApi,
        ready: Callable[[], bool],
        registry: CollectorRegistry,
        routes: frozenset[str],
        authorizer: KubeAuthorizer | None = None,
    ) -> None:
        self._webhooks = webhooks
        self._ledger_api = ledger_api
        self._ready = ready
        self._registry = registry
        self._routes = routes
        self._authorizer = authorizer

    def respond(self, request: Request) -> Response:
        try:
            return self._route(request)
        except Exception:
            log.exception("%s /%s failed", request.method, "/".join(request.segments)[:200])
            return error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the operator log")

    def _route(self, request: Request) -> Response:
        method, query = request.method, request.query
        handler: Callable[[], Response]
        if not request.segments or request.segments[0] not in self._routes:
            return error(HTTPStatus.NOT_FOUND, "no such path")
        access = _access(request.segments)
        if access is not None and self._authorizer is not None:
            refused = self._authorizer.check(request, access)
            if refused is not None:
                return refused
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


def _access(segments: tuple[str, ...]) -> Access | None:
    """What an internal route reads, for the authorizer; None for the probes."""
    if segments[0] == "metrics":
        return Access(path="/metrics")
    if segments[0] == "api" and len(segments) >= 4:  # /api/v1/<what>/<project>
        return Access(project=segments[3])
    if segments[0] == "api":
        return Access(path="/" + "/".join(segments))
    return None


class _Listener:
    """One bound socket and the thread serving it."""

    def __init__(self, *, host: str, port: int, app: _App, max_connections: int, deadline: float):
        self.host = host
        try:
            self.server = _Server(
                (host, port), app, max_connections=max_connections, deadline=deadline
            )
        except OSError as exc:
            raise KapsaError(f"cannot listen on {host}:{port}: {exc}") from exc
        # How soon stop() returns; twenty idle wake-ups a second cost nothing measurable.
        self.thread = threading.Thread(
            target=self.server.serve_forever, name=f"http:{port}", kwargs={"poll_interval": 0.05}
        )
        self.thread.daemon = True
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def is_loopback(host: str) -> bool:
    """Whether only this pod (and `kubectl port-forward`) can reach `host`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebServer(Service):
    """The operator's HTTP listeners, on background threads; dependencies come in as callables.

    `trigger_poll(project)` must return quickly (enqueue, do not list branches in the request),
    say False for a project it does not know, and raise KapsaError when it cannot poll now
    (a replica standing by): the sender then sees 503 and may redeliver.
    `webhook_secret(project)` is the token of the Project's webhookSecretRef, None when it has
    none or the project is unknown. `ready()` is the readiness probe's answer. The internal
    listener refuses to start off loopback without an `authorizer`.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int = 8080,
        internal_host: str = "127.0.0.1",
        internal_port: int = 0,
        authorizer: KubeAuthorizer | None = None,
        ledger: Ledger | None,
        trigger_poll: Callable[[str], bool],
        webhook_secret: Callable[[str], bytes | None],
        ready: Callable[[], bool],
        clock: Callable[[], datetime] = _utcnow,
        registry: CollectorRegistry = metrics.REGISTRY,
        replay_window: timedelta = timedelta(hours=24),
        replay_capacity: int = 10_000,
        max_connections: int = MAX_CONNECTIONS,
        request_deadline: float = REQUEST_DEADLINE,
    ) -> None:
        self._binds = {"public": (host, port), "internal": (internal_host, internal_port)}
        self._limits = {"max_connections": max_connections, "deadline": request_deadline}
        webhooks = Webhooks(
            trigger_poll=trigger_poll,
            webhook_secret=webhook_secret,
            clock=clock,
            replay_window=replay_window,
            replay_capacity=replay_capacity,
        )
        ledger_api = LedgerApi(ledger=ledger, clock=clock)

        def app(routes: frozenset[str], checker: KubeAuthorizer | None) -> _App:
            return _App(
                webhooks=webhooks,
                ledger_api=ledger_api,
                ready=ready,
                registry=registry,
                routes=routes,
                authorizer=checker,
            )

        self._apps = {
            "public": app(PUBLIC_ROUTES, None),
            "internal": app(INTERNAL_ROUTES, authorizer),
        }
        self._authorized = authorizer is not None
        self._listeners: dict[str, _Listener] = {}

    @property
    def port(self) -> int:
        """The public port once started (a free one when asked for port 0)."""
        listener = self._listeners.get("public")
        return listener.port if listener is not None else self._binds["public"][1]

    @property
    def internal_port(self) -> int:
        listener = self._listeners.get("internal")
        return listener.port if listener is not None else self._binds["internal"][1]

    @property
    def url(self) -> str:
        """Where probes and webhooks are served."""
        return self._listener("public").url

    @property
    def internal_url(self) -> str:
        """Where metrics and the ledger API are served."""
        return self._listener("internal").url

    def _listener(self, name: str) -> _Listener:
        listener = self._listeners.get(name)
        if listener is None:
            raise KapsaError("the HTTP server is not running")
        return listener

    def start(self) -> None:
        if self._listeners:
            return
        internal_host = self._binds["internal"][0]
        if not is_loopback(internal_host) and not self._authorized:
            raise KapsaError(
                f"the internal listener (metrics, ledger API) would answer anyone on "
                f"{internal_host}; bind it to 127.0.0.1 or give it a token authorizer"
            )
        try:
            for name in ("public", "internal"):
                host, port = self._binds[name]
                self._listeners[name] = _Listener(
                    host=host,
                    port=port,
                    app=self._apps[name],
                    max_connections=int(self._limits["max_connections"]),
                    deadline=float(self._limits["deadline"]),
                )
                log.info("serving %s HTTP on %s:%s", name, host, self._listeners[name].port)
        except KapsaError:
            self.stop()
            raise

    def stop(self) -> None:
        for listener in self._listeners.values():
            listener.stop()
        self._listeners = {}
