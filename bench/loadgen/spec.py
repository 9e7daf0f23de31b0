"""What a run is: presets and the arrival schedule (the order mixes are ``bench.orders``).

Everything here is plain data (dataclasses of numbers and strings) so that a
run's description can be handed to worker processes started with ``spawn``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from bench.orders import BTC_USD, Market, Mix


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    duration: float = 60.0
    rate: float = 2000.0
    mix: str = "seed"
    # ramp: rate steps from ramp_start by ramp_step, each step_seconds long.
    ramp: bool = False
    ramp_start: float = 500.0
    ramp_step: float = 500.0
    step_seconds: float = 10.0
    ramp_max: float = 20_000.0
    # deep book: resting orders per side placed before the timed run.
    depth: int = 0


PRESETS = {
    "seed": Preset("seed", "60 s at 2,000 orders/s: 70% limit / 30% market, 0.01-0.5 BTC, "
                   "limit prices within +-2,000 of 70,000, many accounts, both sides"),
    "ramp": Preset("ramp", "seed mix; the rate rises step by step (default from 500/s by "
                   "500/s every 10 s) until it is clearly not held; reports the highest rate "
                   "with P99 within --p99-bound-ms (and no errors), and the highest rate "
                   "kept at all", ramp=True),
    "cancel-heavy": Preset("cancel-heavy", "60 s at 2,000 orders/s of non-crossing limit "
                           "orders (90%) and market orders (10%); 90% of the resting orders "
                           "are cancelled 100 ms after their acknowledgement",
                           mix="cancel-heavy"),
    "deep-book": Preset("deep-book", "the seed run on a book prefilled with --depth "
                        "(default 10,000) resting orders per side, away from the seed "
                        "price band", depth=10_000),
}


@dataclass(frozen=True)
class Segment:
    """From ``start`` to ``end`` seconds after the run's start, ``rate`` orders/s."""

    start: float
    end: float
    rate: float


def constant(duration: float, rate: float) -> list[Segment]:
    return [Segment(0.0, duration, rate)]


def ramp_segments(start: float, step: float, step_seconds: float,
                  maximum: float) -> list[Segment]:
    out, rate, t = [], start, 0.0
    while rate <= maximum + 1e-9:
        out.append(Segment(t, t + step_seconds, rate))
        t += step_seconds
        rate += step
    return out


def schedule(segments: list[Segment], worker: int, workers: int) -> Iterator[float]:
    """Scheduled send times (seconds after the start) of one worker's orders.

    The workers share each segment's rate: worker ``w`` of ``P`` sends every
    ``P / rate`` seconds, offset by ``w / rate``, so together they send at an
    even ``rate``.
    """
    for seg in segments:
        if seg.rate <= 0:
            continue
        dt = workers / seg.rate
        k = 0
        while True:
            t = seg.start + (k + worker / workers) * dt
            if t >= seg.end:
                break
            yield t
            k += 1


@dataclass
class RunSpec:
    """One timed run against one target, as the workers need it."""

    label: str  # e.g. "exchange unary", "echo stream x100"
    target: str  # "exchange" or "echo"
    mode: str  # "unary" or "stream"
    batch: int  # commands per message (stream)
    segments: list[Segment]
    warmup: float
    procs: int
    sessions: int  # stream: OrderEntry sessions in all
    channels: int  # gRPC channels per worker
    addr: str
    keys: list[str]
    mix: Mix
    tag: str  # client_order_id prefix, unique per run
    seed: int = 1
    # stream: send a partly filled message once its first command waited this
    # long; 0: only full messages (and what is left at the end)
    linger_ms: float = 0.0
    max_inflight: int = 20_000  # per worker; beyond it orders wait (their latency counts)
    timeout: float = 10.0  # per unary call
    drain_timeout: float = 15.0
    ramp: bool = False
    p99_bound_ms: float = 100.0
    extra: dict = field(default_factory=dict)
    # The instruments the orders are spread over, in turn (order i goes to
    # markets[i % len(markets)] of its worker): the seed mix on each one's grid.
    markets: list[Market] = field(default_factory=lambda: [BTC_USD])

    @property
    def duration(self) -> float:
        return max(s.end for s in self.segments)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> RunSpec:
        d = dict(d)
        d["segments"] = [Segment(**s) for s in d["segments"]]
        d["mix"] = Mix(**d["mix"])
        d["markets"] = [Market(**m) for m in d.get("markets") or [asdict(BTC_USD)]]
        return RunSpec(**d)


def auto_procs(mode: str, batch: int, rate: float, cpus: int) -> int:
    """Worker processes for a rate: roughly what one Python process can send."""
    per_proc = {"unary": 2_000.0, "stream": 5_000.0}[mode]
    if mode == "stream" and batch > 1:
        per_proc = 40_000.0
    need = int(rate // per_proc) + (1 if rate % per_proc else 0)
    return max(1, min(need, max(1, cpus)))
