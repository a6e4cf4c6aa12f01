"""Push webhooks from GitHub, Gitea and GitLab: verified, de-duplicated, then a poll right away.

A webhook only says "look now": Kapsa then lists the branches itself, exactly as a timed poll
does, and never trusts a commit named in the payload. So a valid push costs one `git ls-remote`,
and the worst a forged or replayed one could do is cost more of them. Hence the order of the
checks: cheap refusals first (size, project, secret), the signature before anything is
remembered, and the replay memory only for requests the secret vouches for, so that nobody can
fill it with delivery ids to block the real ones. The token itself is remembered for
TOKEN_TTL, so forged requests cost no API read each, and a token too short to be a key
(MIN_TOKEN_BYTES) signs nothing.

Polling stays the backstop: providers do not redeliver a failed delivery by themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus

from kapsa import metrics
from kapsa.errors import KapsaError
from kapsa.metrics import WebhookProvider, WebhookResult
from kapsa.web.messages import Request, Response, error, json_response, valid_name

log = logging.getLogger(__name__)

#: Push payloads of large monorepo pushes stay well under this; GitHub caps payloads at 25 MB
#: but drops the commit list beyond 20 commits, so 1 MiB is generous.
MAX_BODY = 1 << 20
#: Shorter webhook tokens are refused: an HMAC key that can be guessed signs for anyone.
MIN_TOKEN_BYTES = 16
#: How long a Project's token (or its absence) is remembered, so that a flood of forged
#: webhooks costs the API server at most one Secret read per Project in this time.
TOKEN_TTL = timedelta(seconds=30)
MAX_REMEMBERED_TOKENS = 10_000


@dataclass(frozen=True)
class Provider:
    name: WebhookProvider
    event_header: str
    push_event: str
    delivery_header: str
    signature_header: str
    """HMAC-SHA256 of the body (hex, GitHub with a `sha256=` prefix) or, for GitLab, the token."""
    signed: bool


GITHUB = Provider(
    "github", "x-github-event", "push", "x-github-delivery", "x-hub-signature-256", signed=True
)
GITEA = Provider(
    "gitea", "x-gitea-event", "push", "x-gitea-delivery", "x-gitea-signature", signed=True
)
GITLAB = Provider(
    "gitlab", "x-gitlab-event", "Push Hook", "x-gitlab-event-uuid", "x-gitlab-token", signed=False
)


def detect(request: Request) -> Provider | None:
    """Gitea first: it also sends X-GitHub-Event (and a GitHub-style signature), for tools."""
    for provider in (GITEA, GITLAB, GITHUB):
        if request.header(provider.event_header) is not None:
            return provider
    return None


def _ascii(value: str) -> bytes:
    # Header values arrive decoded as Latin-1; compare_digest wants bytes for anything non-ASCII.
    return value.strip().encode("latin-1", errors="replace")


def signature_problem(
    provider: Provider, *, request: Request, body: bytes, token: bytes
) -> str | None:
    """Why the request is not from the holder of `token`; None when it is."""
    given = request.header(provider.signature_header)
    if given is None:
        return f"no {provider.signature_header} header"
    if not provider.signed:
        # Hashing both sides first makes the comparison take the same time whatever the length.
        same = hmac.compare_digest(
            hashlib.sha256(_ascii(given)).digest(), hashlib.sha256(token).digest()
        )
        return None if same else "wrong token"
    expected = hmac.new(token, body, hashlib.sha256).hexdigest()
    if provider is GITHUB:
        expected = f"sha256={expected}"
    if hmac.compare_digest(_ascii(given).lower(), expected.encode()):
        return None
    return "signature does not match the body"


class Deliveries:
    """Deliveries accepted lately: a repeat within the window is refused.

    Keyed by the provider's delivery id and by the body's digest, because the delivery id is not
    covered by the signature (a replay may carry a fresh one) while two real pushes never have the
    same body (it names the new head, the old head and when the push happened). Bounded in both
    time and count, so memory stays flat whatever the traffic.
    """

    def __init__(self, *, window: timedelta, capacity: int, clock: Callable[[], datetime]) -> None:
        self._window = window
        self._capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, keys: list[str]) -> bool:
        """Remember all `keys`; False (and nothing remembered) if any was seen in the window."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            if any(key in self._seen for key in keys):
                return False
            for key in keys:
                self._seen[key] = now
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True

    def release(self, keys: list[str]) -> None:
        """Forget a claim whose request did not go through, so that a retry is not a replay."""
        with self._lock:
            for key in keys:
                self._seen.pop(key, None)

    def _expire(self, now: datetime) -> None:
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if now - at <= self._window:
                return
            del self._seen[key]


class Webhooks:
    def __init__(
        self,
        *,
        trigger_poll: Callable[[str], bool],
        webhook_secret: Callable[[str], bytes | None],
        clock: Callable[[], datetime],
        replay_window: timedelta,
        replay_capacity: int,
    ) -> None:
        self._trigger_poll = trigger_poll
        self._webhook_secret = webhook_secret
        self._deliveries = Deliveries(window=replay_window, capacity=replay_capacity, clock=clock)
        self._clock = clock
        self._tokens: dict[str, tuple[datetime, bytes | None]] = {}
        self._tokens_lock = threading.Lock()

    def _token(self, project: str) -> bytes | None:
        """The Project's token, read at most once per TOKEN_TTL (errors are not remembered)."""
        now = self._clock()
        with self._tokens_lock:
            hit = self._tokens.get(project)
            if hit is not None and hit[0] > now:
                return hit[1]
        token = self._webhook_secret(project)
        with self._tokens_lock:
            if len(self._tokens) >= MAX_REMEMBERED_TOKENS:
                self._tokens = {p: v for p, v in self._tokens.items() if v[0] > now}
            if len(self._tokens) < MAX_REMEMBERED_TOKENS:
                self._tokens[project] = (now + TOKEN_TTL, token)
        return token

    def handle(self, project: str, *, request: Request) -> Response:
        provider = detect(request)
        name: WebhookProvider = "unknown" if provider is None else provider.name
        shown = project if valid_name(project) else repr(project[:80])

        def refuse(status: HTTPStatus, result: WebhookResult, reason: str, answer: str) -> Response:
            metrics.count_webhook(provider=name, result=result)
            log.warning(
                "webhook refused: project=%s provider=%s reason=%s remote=%s",
                shown,
                name,
                reason,
                request.remote,
            )
            return error(status, answer)

        if provider is None:
            return refuse(
                HTTPStatus.BAD_REQUEST,
                "bad_request",
                "no provider event header",
                "not a GitHub, Gitea or GitLab webhook (no X-GitHub-Event, X-Gitea-Event or "
                "X-Gitlab-Event header)",
            )
        length = request.content_length
        if length is None:
            return refuse(
                HTTPStatus.LENGTH_REQUIRED,
                "bad_request",
                "no Content-Length",
                "Content-Length required",
            )
        if length > MAX_BODY:
            return refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "too_large",
                f"body of {length} bytes",
                f"the body is over {MAX_BODY} bytes",
            )
        unknown = f"no project {shown} with a webhook secret"
        if not valid_name(project):
            return refuse(HTTPStatus.NOT_FOUND, "unknown_project", "not a project name", unknown)
        try:
            token = self._token(project)
        except KapsaError as exc:
            return refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "unavailable",
                f"secret unreadable: {exc}",
                "the webhook secret cannot be read now; polling will find the push",
            )
        if not token:  # an empty key would let anyone sign
            return refuse(
                HTTPStatus.NOT_FOUND,
                "unknown_project",
                "unknown project or no webhook secret",
                unknown,
            )
        if len(token) < MIN_TOKEN_BYTES:
            return refuse(
                HTTPStatus.FORBIDDEN,
                "bad_signature",
                f"token shorter than {MIN_TOKEN_BYTES} bytes",
                f"this Project's webhook token is shorter than {MIN_TOKEN_BYTES} bytes, which "
                "Kapsa does not accept; set a longer one (openssl rand -hex 20)",
            )
        try:
            body = request.read_body(length)
        except OSError as exc:
            return refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                "bad_request",
                f"body unread: {exc}",
                "body not received",
            )
        if len(body) != length:
            return refuse(
                HTTPStatus.BAD_REQUEST,
                "bad_request",
                "body shorter than Content-Length",
                "body shorter than Content-Length",
            )
        problem = signature_problem(provider, request=request, body=body, token=token)
        if problem is not None:
            return refuse(HTTPStatus.UNAUTHORIZED, "bad_signature", problem, problem)
        keys = [f"{project}/body/{hashlib.sha256(body).hexdigest()}"]
        delivery = request.header(provider.delivery_header)
        if delivery:
            keys.append(f"{project}/{provider.name}/{delivery.strip()}")
        if not self._deliveries.claim(keys):
            return refuse(
                HTTPStatus.CONFLICT,
                "replayed",
                f"delivery {delivery[:80] if delivery else '(same body)'!r} seen already",
                "this delivery was received already",
            )
        event = request.header(provider.event_header) or ""
        if event.strip() != provider.push_event:
            metrics.count_webhook(provider=provider.name, result="ignored")
            log.info(
                "webhook ignored: project=%s provider=%s event=%r",
                project,
                provider.name,
                event[:40],
            )
            return json_response(HTTPStatus.OK, {"result": "ignored", "event": event[:40]})
        try:
            known = self._trigger_poll(project)
        except KapsaError as exc:  # e.g. a replica standing by: it does not poll
            self._deliveries.release(keys)
            return refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "unavailable",
                f"poll not triggered: {exc}",
                f"cannot poll now ({exc}); redeliver later, or polling will find the push",
            )
        except BaseException:
            self._deliveries.release(keys)
            raise
        if not known:
            self._deliveries.release(keys)
            return refuse(HTTPStatus.NOT_FOUND, "unknown_project", "project gone", unknown)
        metrics.count_webhook(provider=provider.name, result="accepted")
        log.info(
            "webhook accepted: project=%s provider=%s delivery=%r; polling now",
            project,
            provider.name,
            (delivery or "-")[:80],
        )
        return json_response(HTTPStatus.ACCEPTED, {"result": "accepted", "project": project})
