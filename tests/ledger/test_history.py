"""Append and read back: what `kapsa history` and the reconciler's restart rely on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kapsa.errors import LedgerError
from kapsa.ledger import Entry, Ledger
from tests.ledger._factory import append_forged_web_rows, entry, minutes


def test_an_appended_transition_comes_back_whole(ledger: Ledger) -> None:
    written = entry(
        commit="3f2a9c1",
        image="registry.local/web@sha256:abc",
        generation=7,
        source="webhook",
    )

    assert ledger.append(written) is True

    assert ledger.history(project="web") == [written]


def test_a_retried_append_records_once_and_says_so(ledger: Ledger) -> None:
    first = entry(seq=1, message="first try")

    assert ledger.append(first) is True
    assert ledger.append(first) is False
    assert ledger.append(entry(seq=1, message="a retry that raced")) is False

    assert ledger.history(project="web") == [first]


def test_times_come_back_in_utc_whatever_zone_they_were_written_in(ledger: Ledger) -> None:
    paris = timezone(timedelta(hours=1))
    ledger.append(entry(at=datetime(2025, 3, 1, 13, 0, tzinfo=paris)))

    [back] = ledger.history(project="web")

    assert back.at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert back.at.utcoffset() == timedelta(0)


def test_a_naive_time_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="naive"):
        ledger.append(entry(at=datetime(2025, 3, 1, 12, 0)))


def test_history_is_oldest_first_by_time_then_append_order(ledger: Ledger) -> None:
    # seq 3 is written last, as a restarted reconciler backfills it, but happened second.
    for seq, minute in ((1, 1), (2, 5), (4, 5), (3, 2)):
        ledger.append(entry(seq=seq, at=minutes(minute)))

    assert [e.seq for e in ledger.history(project="web")] == [1, 3, 2, 4]
    assert [e.seq for e in ledger.history(project="web", limit=2)] == [2, 4]


def test_limit_keeps_the_newest_rows_still_oldest_first(ledger: Ledger) -> None:
    for seq in range(1, 8):
        ledger.append(entry(seq=seq, at=minutes(seq)))

    assert [e.seq for e in ledger.history(project="web", limit=3)] == [5, 6, 7]


def _project_with_two_environments(ledger: Ledger) -> dict[str, Entry]:
    rows = {
        "project": entry(kind="Project", name="web", uid="uid-web", at=minutes(0)),
        "prod": entry(name="web-prod", uid="uid-prod", at=minutes(1)),
        "staging": entry(name="web-staging", uid="uid-staging", at=minutes(2)),
        "other": entry(project="shop", name="shop-prod", uid="uid-shop", at=minutes(3)),
        "prod-later": entry(name="web-prod", uid="uid-prod", seq=2, at=minutes(4)),
    }
    for row in rows.values():
        ledger.append(row)
    return rows


def test_history_of_a_project_covers_its_own_rows_and_all_its_environments(
    ledger: Ledger,
) -> None:
    rows = _project_with_two_environments(ledger)

    assert ledger.history(project="web") == [
        rows["project"],
        rows["prod"],
        rows["staging"],
        rows["prod-later"],
    ]


def test_history_of_an_environment_is_only_that_environment(ledger: Ledger) -> None:
    rows = _project_with_two_environments(ledger)

    assert ledger.history(project="web", environment="web-prod") == [
        rows["prod"],
        rows["prod-later"],
    ]
    assert ledger.history(project="web", environment="web-missing") == []


# -- scoped by namespace (issue #14, attack 2) ------------------------------------------------


def test_rows_of_environments_outside_the_projects_namespace_are_not_its_history(
    ledger: Ledger,
) -> None:
    rows = _project_with_two_environments(ledger)
    append_forged_web_rows(ledger)
    own = [rows["project"], rows["prod"], rows["staging"], rows["prod-later"]]

    assert ledger.history(project="web") == own
    assert ledger.history(project="web", limit=10) == own
    assert ledger.history(project="web", since=minutes(2), until=minutes(9)) == own[2:]
    assert ledger.history(project="web", environment="web-prod") == [
        rows["prod"],
        rows["prod-later"],
    ]
    assert ledger.history(project="web", environment="sneaky") == []


def test_a_forged_environment_never_shows_in_deployments_at_or_last_moves(
    ledger: Ledger,
) -> None:
    ledger.append(entry(seq=1, to_state="Running", image="registry.local/web@1", at=minutes(1)))
    append_forged_web_rows(ledger)

    [only] = ledger.deployments(project="web", environment="web-prod")
    assert (only.image, only.ended) == ("registry.local/web@1", None)
    running = ledger.at(project="web", environment="web-prod", when=minutes(10))
    assert running is not None
    assert running.image == "registry.local/web@1"
    last = ledger.last_move_to(project="web", environment="web-prod", state="Running")
    assert last is not None
    assert last.uid == "uid-web-prod"
    assert ledger.last_move_to(project="web", environment="sneaky", state="Building") is None


def test_since_and_until_are_inclusive_bounds(ledger: Ledger) -> None:
    for seq in range(1, 6):
        ledger.append(entry(seq=seq, at=minutes(10 * seq)))

    window = ledger.history(project="web", since=minutes(20), until=minutes(40))
    assert [e.seq for e in window] == [2, 3, 4]
    assert [e.seq for e in ledger.history(project="web", since=minutes(41))] == [5]
    assert [e.seq for e in ledger.history(project="web", until=minutes(9))] == []


def test_last_seq_is_where_a_restarted_reconciler_resumes(ledger: Ledger) -> None:
    assert ledger.last_seq("uid-web-prod") == 0
    for seq in (1, 2, 5):
        ledger.append(entry(seq=seq))
    ledger.append(entry(uid="uid-other", seq=9))

    assert ledger.last_seq("uid-web-prod") == 5


def test_why_is_the_last_transition_of_the_object(ledger: Ledger) -> None:
    assert ledger.why(uid="uid-web-prod") is None
    failed = entry(
        seq=3,
        from_state="Deploying",
        to_state="Failed",
        reason="ReadinessTimeout",
        message="no pod became ready in 5m",
        at=minutes(3),
    )
    ledger.append(entry(seq=1, at=minutes(1)))
    ledger.append(failed)
    ledger.append(entry(seq=2, at=minutes(2)))
    ledger.append(entry(uid="uid-other", seq=4, at=minutes(4)))

    assert ledger.why(uid="uid-web-prod") == failed


def test_entries_serialise_to_json_ready_dicts() -> None:
    data = entry(at=datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC), commit="abc").to_dict()

    assert data["at"] == "2025-03-01T12:00:05Z"
    assert data["commit"] == "abc"
    assert data["seq"] == 1
    assert set(data) == set(Entry.__dataclass_fields__)
