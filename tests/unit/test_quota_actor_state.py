"""The quota actor's own bookkeeping, run in-process (no cluster): returned leases are not calls."""

from __future__ import annotations

from actors.quota import QuotaActor
from farm.config import QuotaConfig

_Actor = QuotaActor.__ray_actor_class__  # the plain class behind the Ray actor


def test_returned_leases_do_not_hide_overload_as_noise() -> None:
    actor = _Actor(QuotaConfig(rpm=600, tpm=10**9).model_dump())  # no name: nothing goes to Ray's KV
    for _ in range(50):
        granted = actor.grant(1, 10)
        actor.give_back(granted.requests, 0)  # every lease expired unused but five
    for _ in range(5):
        actor.grant(1, 10)
    for _ in range(3):  # 3 429s against the 5 calls really sent: overload, not noise
        actor.throttled()
    assert actor._quota.cuts == 1
