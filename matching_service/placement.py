"""Where each instrument should be owned: homes, failback, hand-over (issue 15).

Every matching pod registers itself by name (EXCHANGE_MATCHING_NAME) in ``matching_pods``
on the session that holds its instrument locks (its owner session); its row counts as
live only while that session lives (the session's backend pid and start time are in
``pg_stat_activity``), so liveness is exact without heartbeats.

An instrument's *home* is, of the pods that are live (or reserved, below) and may own it:
the pod an admin moved it to (``instrument_state.assigned_to``), else the first pod by
name whose EXCHANGE_MATCHING_HOME names it. The rules each pod applies to every instrument
at every ownership round (node.py):

- take: a pod takes an instrument nobody holds unless a hand-over to another live pod is
  pending, or the instrument has a home that is another pod. With no home (the home pod
  died, and no reservation), a standby (a live pod with no home) takes it at once, or
  any allowed pod when there is no standby: crash failover is as fast as before.
- hand over: a pod that owns an instrument whose home is another *live* pod hands it over
  (failback, or an admin move): it marks the hand-over (``handover_to``, for a limited
  time: only that pod may take it meanwhile), drains the instrument's loop (the batch in
  progress is committed, the commands behind it are refused NOT_OWNER and the order
  services retry them on the new owner), unlocks it and wakes the others (a notification
  on ``exchange_changes``). The target takes it with a new epoch and the book as
  committed.
- reserve: a pod stopping cleanly with EXCHANGE_MATCHING_RESTART_GRACE > 0 marks its row
  ``reserved_until``: until then it still counts as the home of its home instruments, so
  the others leave them alone and its next incarnation takes them at once.

The decisions are plain functions of a ``Placement`` read from PostgreSQL (store.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exchange_common.config import spec_includes

# How long a hand-over waits for its target to take the instrument (seconds); after it
# any pod may take it again by the usual rules.
HANDOVER_TIMEOUT = 10.0


@dataclass(frozen=True)
class Pod:
    """A row of ``matching_pods`` as seen now."""

    name: str
    address: str
    home: str
    may_own: str
    live: bool
    # Stopped cleanly, and its restart grace has not run out.
    reserved: bool

    def is_home_of(self, symbol: str) -> bool:
        return spec_includes(self.home, symbol)

    def may_take(self, symbol: str) -> bool:
        return spec_includes(self.may_own, symbol)


@dataclass(frozen=True)
class InstrumentPlacement:
    """An instrument's ownership columns of ``instrument_state``."""

    instrument_id: int
    symbol: str
    owner_name: str | None = None
    owner_epoch: int = 0
    assigned_to: str | None = None
    # The pending hand-over's target (None when none, or it ran out).
    handover_to: str | None = None


@dataclass
class Placement:
    pods: dict[str, Pod] = field(default_factory=dict)
    instruments: dict[int, InstrumentPlacement] = field(default_factory=dict)

    def home(self, instrument_id: int, symbol: str) -> Pod | None:
        """The instrument's home: the pod it is assigned to, else the first pod by name
        whose home names it; of those that are live or reserved and may own it."""
        here = self.instruments.get(instrument_id)
        assigned = self.pods.get(here.assigned_to) if here and here.assigned_to else None
        candidates = [assigned] if assigned is not None else []
        candidates += sorted((p for p in self.pods.values() if p.is_home_of(symbol)),
                             key=lambda p: p.name)
        for pod in candidates:
            if (pod.live or pod.reserved) and pod.may_take(symbol):
                return pod
        return None

    def may_take(self, me: str, instrument_id: int, symbol: str) -> bool:
        """Whether pod ``me`` may try to take the instrument (if nobody holds it)."""
        here = self.instruments.get(instrument_id)
        if here is not None and here.handover_to:
            if here.handover_to == me:
                # Handed to this pod (even if its home changed meanwhile: it then hands
                # it on, rather than leave it without an owner until the hand-over ends).
                return True
            target = self.pods.get(here.handover_to)
            if target is not None and target.live:
                return False
        home = self.home(instrument_id, symbol)
        if home is not None:
            return home.name == me
        # No home: a standby (a live pod without a home) takes it; the other pods only
        # when no standby may (they are sized for their own instruments).
        standbys = [p for p in self.pods.values()
                    if p.live and not p.home.strip() and p.may_take(symbol)]
        return not standbys or me in {p.name for p in standbys}

    def hand_over_to(self, me: str, instrument_id: int, symbol: str) -> str | None:
        """For an instrument pod ``me`` owns: the live pod it should go to, if any."""
        home = self.home(instrument_id, symbol)
        if home is None or home.name == me or not home.live:
            return None
        return home.name
