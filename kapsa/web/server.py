"""The operator's HTTP listeners: one facing the cluster, one for the operator's readers.

The public listener (port `http`) serves only what kubelet and git hosts need: `/healthz`,
`/readyz` and `/webhooks/`. The internal listener serves `/metrics` and the read-only ledger API
(`/api/v1/`, described by `/api/v1/openapi.json`): bound to loopback by default, reached with
`kubectl port-forward`; bound to the pod network only with a KubeAuthorizer (kapsa.web.auth)
checking every caller's bearer token.

Both are served by cheroot, CherryPy's WSGI server, a maintained library: HTTP parsing, keep-alive
and header limits are its job, not ours. It fits because the routes are synchronous functions
from a `Request` to a `Response` (kapsa.web.messages): cheroot runs them on a fixed pool of
worker threads, reads the body only when a route asks for it (so a webhook is refused by size,
project and token before its body is read), and lets a connection be refused before it reaches
a worker. waitress, the other candidate, buffers every request whole, body included, before the
application sees it, and queues connections beyond its limits instead of refusing them.

Kept on top of cheroot, since it has neither: each listener serves at most `max_connections`
requests at once (one worker thread each; the next connections get 503 at once from the
accepting thread), and each request gets `request_deadline` seconds in total, however slowly its
client trickles bytes; each read also times out after REQUEST_TIMEOUT. This module alone touches
sockets.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import IO, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from wsgiref.types import StartResponse, WSGIEnvironment

from cheroot import server as cheroot_server
from cheroot import wsgi
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from kapsa import metrics
from kapsa.errors import KapsaError
from kapsa.ledger import Ledger
from kapsa.lifecycle import Service
from kapsa.web import openapi
from kapsa.web.auth import Access, KubeAuthorizer
from kapsa.web.ledger_api import LedgerApi
from kapsa.web.messages import Request, Response, error, text
from kapsa.web.webhooks import MAX_BODY, Webhooks

log = logging.getLogger(__name__)

#: A client that sends headers or a body slower than this holds a thread; cut it off.
REQUEST_TIMEOUT = 10
#: And one that sends a byte just often enough is cut off this long after its request began.
REQUEST_DEADLINE = 30.0
#: Requests served at once per listener; more are answered 503 without a thread.
MAX_CONNECTIONS = 64
#: The request line and headers together; GitHub's webhook headers are about 1 KiB.
MAX_HEADER_BYTES = 64 * 1024
#: How long stop() waits for requests in flight before it shuts their sockets.
STOP_GRACE = 1
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
#: Set by _Gateway: closes the connection after this response instead of keeping it alive.
_CLOSE = "kapsa.close_connection"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Body:
    """The request body, read at most up to what the client declared and the caller allows."""

    def __init__(self, stream: IO[bytes], declared: int) -> None:
        self._stream = stream
        self.remaining = declared

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


def _declared_length(value: str | None) -> int | None:
    """Content-Length as sent; -1 when it is not plain digits."""
    if value is None:
        return None
    value = value.strip()
    # Digits only: int() would also take "+1", "1_000" and " 1 ", which proxies read otherwise.
    return int(value) if value.isascii() and value.isdigit() else -1


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    """The request headers, lower-cased with dashes, out of the WSGI environ's CGI names."""
    found = {
        key[5:].lower().replace("_", "-"): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if key in environ:
            found[key.lower().replace("_", "-")] = str(environ[key])
    return found


def _segments(environ: WSGIEnvironment) -> tuple[tuple[str, ...], str]:
    """The path split on `/` and then percent-decoded, segment by segment, and the query.

    From the raw request target when the server gives it (cheroot's REQUEST_URI): PATH_INFO is
    decoded already, so `%2F` inside a name would split it and `%2541` be decoded twice.
    """
    raw = environ.get("REQUEST_URI")
    if raw:
        url = urlsplit(str(raw))
        path, query = url.path, url.query
    else:
        path, query = quote(str(environ.get("PATH_INFO", ""))), str(environ.get("QUERY_STRING", ""))
    return tuple(unquote(part) for part in path.split("/") if part), query


class _WsgiApp:
    """An _App as a WSGI application: the environ in as a Request, the Response out.

    Also decides what becomes of a body the route did not read: drained (up to DRAIN_LIMIT) so
    that the client reads the answer rather than a reset, or the connection closed after the
    answer, as for framing Kapsa will not guess at (a Content-Length that is not plain digits,
    or a chunked body).
    """

    def __init__(self, app: _App) -> None:
        self._app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        declared = _declared_length(environ.get("CONTENT_LENGTH"))
        chunked = "HTTP_TRANSFER_ENCODING" in environ
        body = _Body(
            environ["wsgi.input"], declared if declared is not None and declared > 0 else 0
        )
        if declared is not None and declared < 0:
            response = error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        elif chunked and declared is not None:
            response = error(HTTPStatus.BAD_REQUEST, "both Content-Length and Transfer-Encoding")
        else:
            segments, query = _segments(environ)
            response = self._app.respond(
                Request(
                    method=str(environ["REQUEST_METHOD"]),
                    segments=segments,
                    query=dict(parse_qsl(query, keep_blank_values=True)),
                    headers=_headers(environ),
                    remote=str(environ.get("REMOTE_ADDR", "")),
                    content_length=declared,
                    read_body=body.read,
                )
            )
        close = chunked or (declared is not None and declared < 0) or body.remaining > DRAIN_LIMIT
        if not close and body.remaining:
            try:
                body.drain()
            except OSError:
                close = True
        if close and _CLOSE in environ:
            environ[_CLOSE]()
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers.items(),
        ]
        start_response(f"{response.status.value} {response.status.phrase}", headers)
        return [response.body]


class _Gateway(wsgi.Gateway_10):
    """cheroot's WSGI 1.0 gateway, plus a way for the application to close the connection."""

    # cheroot's stubs leave this untyped (None on the base class); it returns the environ.
    def get_environ(self) -> WSGIEnvironment:  # type: ignore[override]
        environ = cast(WSGIEnvironment, super().get_environ())  # type: ignore[no-untyped-call]
        environ[_CLOSE] = self._close
        return environ

    def _close(self) -> None:
        self.req.close_connection = True


class _Connection(cheroot_server.HTTPConnection):
    """One connection's turn on a worker: one request, within the total deadline."""

    def communicate(self) -> bool:
        listener = cast(_Server, self.server)
        # Past the deadline the socket is shut, so any read or write of the request fails.
        cutoff = threading.Timer(listener.deadline, _shut, args=(self.socket,))
        cutoff.daemon = True
        cutoff.start()
        try:
            return bool(super().communicate())  # type: ignore[no-untyped-call]
        finally:
            cutoff.cancel()
            listener.slots.release()


class _Server(wsgi.Server):
    """cheroot's WSGI server with a worker per slot and the 503 for connections beyond them."""

    ConnectionClass = _Connection
    #: How often the accepting thread wakes up between connections, so how soon stop() returns
    #: (it waits for that thread); twenty idle wake-ups a second cost nothing measurable.
    expiration_interval = 0.05

    def __init__(
        self,
        address: tuple[str, int],
        app: _App,
        *,
        max_connections: int,
        deadline: float,
        name: str,
    ) -> None:
        super().__init__(
            address,
            _WsgiApp(app),
            numthreads=max_connections,
            max=max_connections,
            server_name="kapsa",
            timeout=REQUEST_TIMEOUT,
            shutdown_timeout=STOP_GRACE,
        )
        self.gateway = _Gateway
        self.max_request_header_size = MAX_HEADER_BYTES
        self.slots = threading.BoundedSemaphore(max_connections)
        self.deadline = deadline
        self.name = name

    def process_conn(self, conn: cheroot_server.HTTPConnection) -> None:
        """To a worker if a slot is free (it gives the slot back); else 503 now, from here.

        Called for each new connection and for each kept-alive one that sent another request,
        on the thread that accepts them, so the refusal must be quick.
        """
        if self.slots.acquire(blocking=False):
            super().process_conn(conn)
            return
        request = conn.socket
        try:
            request.settimeout(1.0)
            request.sendall(_BUSY)
            # Take in the request line the client is sending, so that closing does not
            # reset the connection before it read the answer; a moment at most.
            request.settimeout(0.05)
            request.recv(65536)
        except OSError:
            pass
        conn.close()

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        # cheroot would print to stderr. A client gone mid-answer is routine (INFO or less);
        # its own errors are worth a line, the routes' are caught and logged by _App.
        shown = logging.WARNING if level >= logging.ERROR else logging.DEBUG
        log.log(shown, "%s: %s", self.name, msg, exc_info=traceback)


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
            case ("api", *_):
                found = openapi.match(request.segments)
                if found is None:
                    return error(HTTPStatus.NOT_FOUND, "no such path")
                operation, path = found
                allowed, handler = (
                    "GET",
                    lambda: self._ledger_api.serve(operation, path=path, query=query),
                )
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
    """One bound socket and the thread accepting on it."""

    def __init__(self, *, host: str, port: int, app: _App, max_connections: int, deadline: float):
        self.host = host
        self.server = _Server(
            (host, port),
            app,
            max_connections=max_connections,
            deadline=deadline,
            name=f"http:{port}",
        )
        try:
            self.server.prepare()
        except OSError as exc:
            raise KapsaError(f"cannot listen on {host}:{port}: {exc}") from exc
        self.thread = threading.Thread(target=self.server.serve, name=f"http:{self.port}")
        self.thread.daemon = True
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.stop()
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
