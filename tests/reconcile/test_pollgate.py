"""The poll gate: slow remotes cannot take every poll thread from the other Projects."""

from __future__ import annotations

from contextlib import ExitStack

from kapsa.reconcile.pollgate import PollGate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_host_gets_at_most_its_share_and_others_still_get_slots() -> None:
    gate = PollGate(per_host=2, slow_slots=1)
    with ExitStack() as held:
        assert held.enter_context(gate.slot("slow.example.com"))
        assert held.enter_context(gate.slot("slow.example.com"))
        with gate.slot("slow.example.com") as third:
            assert third is False  # skipped: costs no thread
        with gate.slot("git.corp.com") as other:
            assert other is True


def test_thirty_slow_hosts_share_a_few_slots_once_they_were_seen_slow() -> None:
    clock = Clock()
    gate = PollGate(per_host=2, slow_slots=2, slow_after=10.0, clock=clock)
    hosts = [f"slow{i}.example.com" for i in range(30)]
    for host in hosts:  # each listing takes 30 s (the git deadline)
        with gate.slot(host) as allowed:
            assert allowed
            clock.now += 30
    assert all(gate.is_slow(h) for h in hosts)
    with ExitStack() as held:
        granted = [held.enter_context(gate.slot(h)) for h in hosts]
        assert sum(granted) == 2
        with gate.slot("fast.example.com") as fast:
            assert fast is True


def test_a_quick_listing_takes_a_host_out_of_the_slow_lane() -> None:
    clock = Clock()
    gate = PollGate(slow_after=10.0, clock=clock)
    with gate.slot("flaky.example.com"):
        clock.now += 12
    assert gate.is_slow("flaky.example.com")
    with gate.slot("flaky.example.com"):
        clock.now += 1
    assert not gate.is_slow("flaky.example.com")
