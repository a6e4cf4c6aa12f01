"""The ledger, read-only over HTTP: what `kapsa history` answers, for users without a shell.

Same queries, same JSON (the records' `to_dict`) and the same time syntax (`parse_when`) as the
CLI reading the ledger file, so `kapsa history --server` prints exactly what it prints locally.
The routes and their parameters are those of kapsa.web.openapi, which `serve` dispatches on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from http import HTTPStatus

from kapsa.errors import InvalidSpecError, LedgerError
from kapsa.ledger import Ledger, parse_when
from kapsa.web import openapi
from kapsa.web.messages import Response, error, json_response, valid_name


class LedgerApi:
    def __init__(self, *, ledger: Ledger | None, clock: Callable[[], datetime]) -> None:
        self._ledger = ledger
        self._clock = clock

    def serve(
        self, operation: openapi.Operation, *, path: Mapping[str, str], query: Mapping[str, str]
    ) -> Response:
        """The answer to one of kapsa.web.openapi's operations; `query` as sent, of which the
        handler sees only what the operation declares."""
        known = operation.known(query)
        for key, value in known.items():
            if not value:  # `?since=` is a mistake, not a request for everything
                return error(HTTPStatus.BAD_REQUEST, f"{key}: empty; leave it out instead")
        match operation.operation_id:
            case "history":
                return self.history(path["project"], query=known)
            case "deployments":
                return self.deployments(path["project"], env=path["env"])
            case "at":
                return self.at(path["project"], env=path["env"], query=known)
            case "openapi":
                return json_response(HTTPStatus.OK, openapi.document())
        raise LookupError(f"no handler for operation {operation.operation_id}")

    def history(self, project: str, *, query: Mapping[str, str]) -> Response:
        env = query.get("env") or None
        refused = self._refuse(project, env)
        if refused is not None:
            return refused
        try:
            since, until = self._when(query, "since"), self._when(query, "until")
            limit = _limit(query.get("limit"))
        except InvalidSpecError as exc:
            return error(HTTPStatus.BAD_REQUEST, str(exc))
        assert self._ledger is not None
        try:
            entries = self._ledger.history(
                project=project, environment=env, since=since, until=until, limit=limit
            )
        except LedgerError as exc:
            return error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        return json_response(HTTPStatus.OK, [e.to_dict() for e in entries])

    def deployments(self, project: str, *, env: str) -> Response:
        refused = self._refuse(project, env)
        if refused is not None:
            return refused
        assert self._ledger is not None
        try:
            spans = self._ledger.deployments(project=project, environment=env)
        except LedgerError as exc:
            return error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        return json_response(HTTPStatus.OK, [d.to_dict() for d in spans])

    def at(self, project: str, *, env: str, query: Mapping[str, str]) -> Response:
        refused = self._refuse(project, env)
        if refused is not None:
            return refused
        try:
            when = self._when(query, "time")
        except InvalidSpecError as exc:
            return error(HTTPStatus.BAD_REQUEST, str(exc))
        if when is None:
            return error(HTTPStatus.BAD_REQUEST, "give ?time= (ISO 8601 or a span ago like 2h)")
        assert self._ledger is not None
        try:
            found = self._ledger.at(project=project, environment=env, when=when)
        except LedgerError as exc:
            return error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        return json_response(HTTPStatus.OK, None if found is None else found.to_dict())

    def _refuse(self, project: str, env: str | None) -> Response | None:
        for name in (project, env):
            if name is not None and not valid_name(name):
                return error(HTTPStatus.BAD_REQUEST, f"not a Kubernetes object name: {name!r}")
        if self._ledger is None:
            return error(HTTPStatus.SERVICE_UNAVAILABLE, "this server has no ledger")
        return None

    def _when(self, query: Mapping[str, str], key: str) -> datetime | None:
        text = query.get(key)
        if not text:
            return None
        try:
            return parse_when(text, now=self._clock())
        except InvalidSpecError as exc:
            raise InvalidSpecError(f"{key}: {exc}") from None


def _limit(text: str | None) -> int | None:
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise InvalidSpecError(f"limit: not a positive whole number: {text!r}")
    return int(text)
