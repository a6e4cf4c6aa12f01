"""The ledger API's routes in the admin's guide are the ones the OpenAPI description serves."""

from __future__ import annotations

import re
from pathlib import Path

from kapsa.web import openapi

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "platform-admin.md"
_ROW = re.compile(r"^\| `(/api/v1/[^`?]*)(?:\?([^`]*))?` \|", re.MULTILINE)


def test_the_guide_lists_each_route_with_its_query_parameters() -> None:
    listed = {
        path: sorted(part.split("=")[0] for part in (query or "").split("&") if part)
        for path, query in _ROW.findall(GUIDE.read_text(encoding="utf-8"))
    }
    served = {
        openapi.PREFIX + operation.path: sorted(p.name for p in operation.query)
        for operation in openapi.OPERATIONS
    }

    assert listed == served
