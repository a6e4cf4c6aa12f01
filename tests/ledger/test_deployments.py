"""Deployments and `at`: what ran in an environment, from when to when, on a scripted history."""

from __future__ import annotations

from datetime import timedelta

from kapsa.ledger import Deployment, Ledger
from tests.ledger._factory import T0, entry, minutes

IMG1 = "registry.local/web@sha256:1111"
IMG2 = "registry.local/web@sha256:2222"
IMG3 = "registry.local/web@sha256:3333"


def _script(ledger: Ledger) -> None:
    """prod: img1 runs at 10, fails at 20, recovers at 25; img2 deploys at 30, runs at 35;
    img3 fails to deploy at 45 (img2 keeps running); the environment expires at 60."""
    steps = [
        (0, "Pending", "Building", "c1", None),
        (5, "Building", "Deploying", "c1", IMG1),
        (10, "Deploying", "Running", "c1", IMG1),
        (20, "Running", "Failed", None, None),
        (25, "Failed", "Running", None, None),
        (30, "Running", "Deploying", "c2", IMG2),
        (35, "Deploying", "Running", "c2", IMG2),
        (40, "Running", "Deploying", "c3", IMG3),
        (45, "Deploying", "Failed", "c3", IMG3),
        (60, "Failed", "Expiring", None, None),
    ]
    for seq, (minute, before, after, commit, image) in enumerate(steps, start=1):
        ledger.append(
            entry(
                seq=seq,
                at=minutes(minute),
                from_state=before,
                to_state=after,
                commit=commit,
                image=image,
            )
        )
    # Noise the queries must ignore: another environment and another project.
    ledger.append(entry(name="web-staging", uid="uid-staging", to_state="Running", image=IMG3))
    ledger.append(entry(project="shop", uid="uid-shop", to_state="Running", image=IMG3))


def _span(d: Deployment) -> tuple[str | None, str | None, float, float | None, bool]:
    ended = None if d.ended is None else (d.ended - T0) / timedelta(minutes=1)
    return d.commit, d.image, (d.started - T0) / timedelta(minutes=1), ended, d.ready


def test_deployments_run_from_running_until_replaced_or_expired(ledger: Ledger) -> None:
    _script(ledger)

    spans = ledger.deployments(project="web", environment="web-prod")

    assert [_span(d) for d in spans] == [
        ("c1", IMG1, 10, 35, True),
        ("c2", IMG2, 35, 60, True),
    ]
    assert spans[0].entry.seq == 3
    assert spans[1].entry.to_state == "Running"
    assert spans[1].entry.at == minutes(35)


def test_the_current_deployment_is_open_ended(ledger: Ledger) -> None:
    ledger.append(entry(seq=1, to_state="Running", commit="c1", image=IMG1, at=minutes(1)))
    ledger.append(entry(seq=2, from_state="Running", to_state="Failed", at=minutes(2)))

    [current] = ledger.deployments(project="web", environment="web-prod")

    assert _span(current) == ("c1", IMG1, 1, None, False)


def test_an_environment_that_never_ran_has_no_deployments(ledger: Ledger) -> None:
    ledger.append(entry(seq=1, to_state="Building"))
    ledger.append(entry(seq=2, from_state="Building", to_state="Failed"))

    assert ledger.deployments(project="web", environment="web-prod") == []


def test_at_answers_what_ran_at_each_moment(ledger: Ledger) -> None:
    _script(ledger)

    def at(minute: float) -> tuple[str | None, str | None, float, float | None, bool] | None:
        found = ledger.at(project="web", environment="web-prod", when=minutes(minute))
        return None if found is None else _span(found)

    assert at(9) is None
    assert at(10) == ("c1", IMG1, 10, None, True)
    assert at(22) == ("c1", IMG1, 10, None, False)
    assert at(30) == ("c1", IMG1, 10, None, True)
    assert at(36) == ("c2", IMG2, 35, None, True)
    assert at(50) == ("c2", IMG2, 35, None, True)
    assert at(61) is None


def test_at_names_the_transition_that_put_the_image_there(ledger: Ledger) -> None:
    _script(ledger)

    found = ledger.at(project="web", environment="web-prod", when=minutes(50))

    assert found is not None
    assert (found.entry.seq, found.entry.from_state, found.entry.commit) == (7, "Deploying", "c2")


def test_a_recreated_environment_starts_a_new_deployment(ledger: Ledger) -> None:
    ledger.append(entry(uid="old", seq=1, to_state="Running", image=IMG1, at=minutes(1)))
    ledger.append(entry(uid="new", seq=1, to_state="Building", at=minutes(5)))
    ledger.append(entry(uid="new", seq=2, to_state="Running", image=IMG1, at=minutes(9)))

    spans = ledger.deployments(project="web", environment="web-prod")

    assert [_span(d) for d in spans] == [(None, IMG1, 1, 5, True), (None, IMG1, 9, None, True)]


def test_deployments_serialise_to_json_ready_dicts(ledger: Ledger) -> None:
    _script(ledger)

    first = ledger.deployments(project="web", environment="web-prod")[0].to_dict()

    assert first["started"] == "2025-03-01T12:10:00Z"
    assert first["ended"] == "2025-03-01T12:35:00Z"
    assert first["ready"] is True
    assert first["entry"]["seq"] == 3
