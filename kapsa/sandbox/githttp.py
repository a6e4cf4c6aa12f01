"""A private git host on 127.0.0.1: smart HTTP behind a password, for the sandbox and the tests.

Most Kapsa users keep their code in private repositories that answer over https only after a
username and password (or token). This server plays that host: every request needs HTTP Basic
auth with the one account given at construction (401 and a `WWW-Authenticate` challenge
otherwise), and what passes is answered by git's own `git http-backend` CGI, as Apache or
nginx would run it. It serves the repositories of a `GitServer` (its `repos_dir`), so the same
repository can be created and moved with `GitServer` and read here with credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import re
import subprocess
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kapsa.errors import SourceError
from kapsa.lifecycle import Service

log = logging.getLogger(__name__)

HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")
REALM = "kapsa"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BACKEND_TIMEOUT = 60.0
_MAX_BODY = 64 * 1024 * 1024
#: What upload-pack needs to answer Kapsa's shallow, tree-only fetches of a commit by id.
_SERVER_CONFIG = {
    "uploadpack.allowAnySHA1InWant": "true",
    "uploadpack.allowFilter": "true",
    "http.receivepack": "true",
}
#: Request headers http-backend reads, as a web server passes them (HTTP_<NAME>).
_FORWARDED_HEADERS = ("Git-Protocol", "Content-Encoding")


class GitHttpServer(Service):
    """`git http-backend` over `repos_dir` behind HTTP Basic auth, on 127.0.0.1 only."""

    def __init__(self, *, repos_dir: Path, username: str, password: str) -> None:
        if not username or ":" in username:
            raise ValueError("the username must be non-empty and without ':'")
        if not password:
            raise ValueError("the password must be non-empty")
        self.repos_dir = repos_dir
        self.username = username
        self._password = password
        self.port: int | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests: list[tuple[str, str, int]] = []

    def __repr__(self) -> str:
        return f"GitHttpServer(repos_dir={self.repos_dir!s}, port={self.port})"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> GitHttpServer:
        """Listen on a free port of 127.0.0.1 (the kernel picks it: no race with others)."""
        if self._httpd is not None:
            return self
        if not HTTP_BACKEND.is_file():
            raise SourceError(f"{HTTP_BACKEND} is missing: install git")
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        httpd.daemon_threads = True
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"kapsa-githttp-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; requests being answered finish on their own threads."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    # -- repositories ----------------------------------------------------------------------

    def url_for(self, name: str) -> str:
        """The http:// URL of repository `name` (the bare `<repos_dir>/<name>.git`)."""
        if self.port is None:
            raise SourceError("the git HTTP server is not running")
        if not _NAME_RE.fullmatch(name) or name.endswith(".git"):
            raise ValueError(f"repository name {name!r}: use letters, digits, '.', '_' and '-'")
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def requests(self) -> list[tuple[str, str, int]]:
        """Every request answered so far: (method, path, HTTP status)."""
        with self._lock:
            return list(self._requests)

    # -- for the handler -------------------------------------------------------------------

    def authorized(self, header: str | None) -> str | None:
        """The username when `header` carries the right Basic credentials, else None."""
        if not header:
            return None
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        user, sep, password = decoded.partition(b":")
        # Both compared every time, in constant time, so timing tells nothing about either.
        user_ok = hmac.compare_digest(user, self.username.encode("utf-8"))
        password_ok = hmac.compare_digest(password, self._password.encode("utf-8"))
        if sep and user_ok and password_ok:
            return self.username
        return None

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append((method, path, status))

    def backend_environment(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.repos_dir),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.repos_dir),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(self.port),
            "GIT_CONFIG_COUNT": str(len(_SERVER_CONFIG)),
        }
        for index, (key, value) in enumerate(_SERVER_CONFIG.items()):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env


def _handler_for(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_GitHttpHandler):
        git_http = server

    return Handler


class _GitHttpHandler(BaseHTTPRequestHandler):
    git_http: GitHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "KapsaGitHttp/1"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        try:
            body = self._read_body()
        except ValueError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, str(exc).encode("utf-8") + b"\n")
            return
        user = self.git_http.authorized(self.headers.get("Authorization"))
        if user is None:
            self._reply(
                HTTPStatus.UNAUTHORIZED,
                b"authentication required\n",
                {"WWW-Authenticate": f'Basic realm="{REALM}"'},
            )
            return
        env = self.git_http.backend_environment()
        env.update(
            {
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": user,
                "REMOTE_ADDR": self.client_address[0],
                "AUTH_TYPE": "Basic",
            }
        )
        for header in _FORWARDED_HEADERS:
            value = self.headers.get(header)
            if value is not None:
                env["HTTP_" + header.upper().replace("-", "_")] = value
        try:
            result = subprocess.run(
                [str(HTTP_BACKEND)],
                input=body,
                capture_output=True,
                env=env,
                cwd=self.git_http.repos_dir,
                timeout=_BACKEND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self._reply(HTTPStatus.GATEWAY_TIMEOUT, b"git http-backend timed out\n")
            return
        if result.stderr:
            log.info("git http-backend: %s", result.stderr.decode("utf-8", "replace").strip())
        self._relay(result.stdout, result.returncode)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > _MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers end with an empty line.
                while self.rfile.readline(1024).strip():
                    pass
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY:
                raise ValueError("request body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _relay(self, output: bytes, returncode: int) -> None:
        """The CGI answer as HTTP: its `Status:` line, its headers and its body."""
        head, sep, body = output.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = output.partition(b"\n\n")
        if not sep:
            message = f"git http-backend gave no CGI headers (exit code {returncode})\n"
            self._reply(HTTPStatus.BAD_GATEWAY, message.encode("utf-8"))
            return
        status = HTTPStatus.OK
        headers: dict[str, str] = {}
        for raw in head.decode("latin-1").splitlines():
            name, _, value = raw.partition(":")
            name, value = name.strip(), value.strip()
            if not name:
                continue
            if name.lower() == "status":
                status = HTTPStatus(int(value.split(" ", 1)[0]))
            elif name.lower() not in ("content-length", "transfer-encoding", "connection"):
                headers[name] = value
        self._reply(status, body, headers)

    def _reply(
        self, status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.git_http.record(self.command, self.path, int(status))
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
