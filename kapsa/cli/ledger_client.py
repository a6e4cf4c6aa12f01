"""Reading the audit ledger from the command line: from its URL, or over the operator's HTTP API.

`kapsa history` prints what it reads and `kapsa rollback --steps` and `kapsa diff-releases`
number the releases they read, so all of them must read the same answer whichever way they
reach the ledger. Both ways return the JSON shape of kapsa.ledger (`to_dict`), which is what
the operator's HTTP API sends: a command can print or count it without knowing where it came
from. With `--server`, a user with `kubectl port-forward -n kapsa-system svc/kapsa 8080` needs
neither the ledger file nor a shell in the pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import typer

from kapsa.errors import KapsaError
from kapsa.ledger import Ledger
from kapsa.ledger.records import iso

SERVER_HELP = (
    "Read over HTTP from the operator instead of the ledger file, e.g. http://localhost:8080 "
    "after `kubectl port-forward -n kapsa-system svc/kapsa 8080`."
)
#: Connecting is quick or hopeless (a port-forward that is not running); a long history may take
#: a while to read and send.
TIMEOUT = (5.0, 60.0)


@dataclass(frozen=True, kw_only=True)
class LedgerQuery:
    """What was asked, with the times already resolved against this machine's clock.

    Only absolute times travel, so `--since 2h` means two hours before the command ran,
    whichever way the ledger is read and whatever the server's clock says.
    """

    project: str
    env: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    at: datetime | None = None


class ServerError(KapsaError):
    """The operator's HTTP port could not be read; the message says what to do."""


def read(query: LedgerQuery, *, deployments: bool, ledger_url: str, server: str | None) -> Any:
    """The answer to `query`: over HTTP when a server is given, else from the ledger's URL.

    With `query.env`, `query.at` asks for the one span running then (or None) and
    `deployments` for every span instead of the transitions. Raises LedgerError or
    ServerError, and typer.BadParameter for a server that is not an http(s) URL.
    """
    if server is not None:
        return read_from_server(server_url(server), query=query, deployments=deployments)
    return read_from_ledger(ledger_url, query=query, deployments=deployments)


def read_from_ledger(url: str, *, query: LedgerQuery, deployments: bool) -> Any:
    """The answer to `query` read straight from the ledger's database, as the API would send it."""
    with Ledger.open(url, create=False) as ledger:
        if query.env is not None and query.at is not None:
            found = ledger.at(project=query.project, environment=query.env, when=query.at)
            return None if found is None else found.to_dict()
        if query.env is not None and deployments:
            spans = ledger.deployments(project=query.project, environment=query.env)
            return [d.to_dict() for d in spans]
        entries = ledger.history(
            project=query.project,
            environment=query.env,
            since=query.since,
            until=query.until,
            limit=query.limit,
        )
        return [e.to_dict() for e in entries]


def server_url(text: str) -> str:
    """The operator's base URL from `--server`, refused early when it cannot be an HTTP URL.

    Without the check a typo such as `localhost:8080` would only fail at the request, in
    requests' words about connection adapters rather than in the option's.
    """
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise typer.BadParameter(
            f"not an http(s) URL: {text!r} (e.g. http://localhost:8080)", param_hint="--server"
        )
    return text.rstrip("/")


def read_from_server(server: str, *, query: LedgerQuery, deployments: bool) -> Any:
    """The answer to `query` from the operator's `/api/v1` routes at `server` (see server_url).

    Every failure becomes a ServerError that says what to check, most often the port-forward.
    """
    project = quote(query.project, safe="")
    params: dict[str, str] = {}
    if query.env is not None and query.at is not None:
        path = f"at/{project}/{quote(query.env, safe='')}"
        params["time"] = iso(query.at) or ""
    elif query.env is not None and deployments:
        path = f"deployments/{project}/{quote(query.env, safe='')}"
    else:
        path = f"history/{project}"
        optional = {"env": query.env, "since": iso(query.since), "until": iso(query.until)}
        params.update({key: value for key, value in optional.items() if value is not None})
        if query.limit is not None:
            params["limit"] = str(query.limit)
    url = f"{server}/api/v1/{path}"
    try:
        response = requests.get(url, params=params, timeout=TIMEOUT)
    except requests.ConnectionError as exc:
        raise ServerError(
            f"cannot reach the Kapsa server at {server} ({_root_cause(exc)}); "
            "is `kubectl port-forward -n kapsa-system svc/kapsa 8080` running?"
        ) from None
    except requests.Timeout:
        raise ServerError(f"the Kapsa server at {server} did not answer in time") from None
    except requests.RequestException as exc:
        raise ServerError(f"cannot read {url}: {_root_cause(exc)}") from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200:
        message = data.get("error") if isinstance(data, dict) else None
        raise ServerError(
            f"the Kapsa server at {server} answered {response.status_code}: "
            f"{message or response.reason}"
        )
    if data is None and response.text.strip() != "null":
        raise ServerError(f"{url} did not answer JSON; is {server} the Kapsa operator?")
    return data


def _root_cause(exc: BaseException) -> str:
    """The innermost OS error (`connection refused`), not urllib3's retry wrapping."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__
