"""placement.py's rules, table-driven: who may take an instrument, who hands it over.

Pods: m0 (home BTC-USD), m1 (home ETH-USD), sb (a standby: no home); all may own all.
"""

from __future__ import annotations

import pytest

from exchange_common.config import MatchingSettings
from matching_service.placement import InstrumentPlacement, Placement, Pod

BTC, ETH = 1, 2


def pod(name: str, home: str, *, live: bool = True, reserved: bool = False,
        may_own: str = "*") -> Pod:
    return Pod(name, f"{name}:50060", home, may_own, live, reserved)


def placement(*pods: Pod, assigned: str | None = None, handover: str | None = None
              ) -> Placement:
    return Placement({p.name: p for p in pods},
                     {BTC: InstrumentPlacement(BTC, "BTC-USD", assigned_to=assigned,
                                               handover_to=handover)})


M0, M1, SB = pod("m0", "BTC-USD"), pod("m1", "ETH-USD"), pod("sb", "")
M0_DEAD = pod("m0", "BTC-USD", live=False)
M0_RESERVED = pod("m0", "BTC-USD", live=False, reserved=True)


@pytest.mark.parametrize(("pods", "kwargs", "takers", "hand_over"), [
    # The home pod is live: only it takes; a holder hands over to it (failback).
    ((M0, M1, SB), {}, {"m0"}, "m0"),
    # The home pod died: the standby takes it at once (failover); nobody to hand over to.
    ((M0_DEAD, M1, SB), {}, {"sb"}, None),
    # ... any pod, when there is no standby.
    ((M0_DEAD, M1, pod("sb", "", live=False)), {}, {"m1"}, None),
    # ... or no standby allowed to own it.
    ((M0_DEAD, M1, pod("sb", "", may_own="ETH-USD")), {}, {"m1"}, None),
    # Stopped with a restart grace: kept for its next incarnation; not handed to it
    # while it is away.
    # (m0's next incarnation, once live, is its home: the first case.)
    ((M0_RESERVED, M1, SB), {}, set(), None),
    # Moved to sb by an admin: sb is its home while live, before m0.
    ((M0, M1, SB), {"assigned": "sb"}, {"sb"}, "sb"),
    # ... and when sb is dead, m0's home setting applies again.
    ((M0, M1, pod("sb", "", live=False)), {"assigned": "sb"}, {"m0"}, "m0"),
    # A hand-over to m1 is pending: only m1 may take it, even though m0 is its home now
    # (m1 then hands it on to m0).
    ((M0, M1, SB), {"handover": "m1"}, {"m1"}, "m0"),
    # ... unless m1 died meanwhile: then the usual rules.
    ((M0, pod("m1", "ETH-USD", live=False), SB), {"handover": "m1"}, {"m0"}, "m0"),
    # A home pod not allowed to own the instrument is no home.
    ((pod("m0", "BTC-USD", may_own="ETH-USD"), M1, SB), {}, {"sb"}, None),
])
def test_rules(pods: tuple[Pod, ...], kwargs: dict, takers: set[str],
               hand_over: str | None) -> None:
    where = placement(*pods, **kwargs)
    # (only live pods take anything, and only what they may own)
    may = {p.name for p in pods
           if p.live and p.may_take("BTC-USD") and where.may_take(p.name, BTC, "BTC-USD")}
    assert may == takers
    for p in pods:
        expected = hand_over if hand_over != p.name else None
        assert where.hand_over_to(p.name, BTC, "BTC-USD") == expected, p.name


def test_two_pods_with_one_home_the_first_by_name_wins() -> None:
    where = placement(pod("b", "BTC-USD"), pod("a", "*"))
    assert where.may_take("a", BTC, "BTC-USD")
    assert not where.may_take("b", BTC, "BTC-USD")
    assert where.hand_over_to("b", BTC, "BTC-USD") == "a"


@pytest.mark.parametrize(("advertise", "name"), [
    ("exchange-matching-2.exchange-matching.default.svc:50060", "exchange-matching-2"),
    ("127.0.0.1:50061", "127.0.0.1:50061"),
    ("localhost:50061", "localhost:50061"),
    ("[::1]:50061", "[::1]:50061"),
])
def test_default_pod_name(advertise: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_INTERNAL_TOKEN", "x" * 32)
    settings = MatchingSettings(database_url="postgresql://x", redis_url="redis://x",
                                matching_advertise=advertise)
    assert settings.pod_name == name


def test_home_must_be_within_the_instruments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_INTERNAL_TOKEN", "x" * 32)
    with pytest.raises(ValueError, match="EXCHANGE_MATCHING_HOME"):
        MatchingSettings(database_url="postgresql://x", redis_url="redis://x",
                         matching_instruments="BTC-USD", matching_home="ETH-USD")
    with pytest.raises(ValueError, match="EXCHANGE_MATCHING_HOME"):
        MatchingSettings(database_url="postgresql://x", redis_url="redis://x",
                         matching_instruments="BTC-USD", matching_home="*")
    MatchingSettings(database_url="postgresql://x", redis_url="redis://x",
                     matching_instruments="*", matching_home="ETH-USD")
