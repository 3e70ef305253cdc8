"""Synthetic behavioural events from known personas (deterministic per seed).

``generate(GeneratorConfig(...))`` returns a :class:`GeneratedLog`: record values
(bytes, as they would sit on Kafka) in arrival order, their keys, what each record
is (``valid``, ``duplicate``, ``late``, ``malformed``) and the ground truth
(user → persona, and persona after the drift point).

* ``events`` valid events are generated; duplicates, late and malformed records
  come on top, at the given rates (a rate of 0.01 adds ~1 % of ``events``).
* Arrival order is event-time order, except late records, which arrive next to
  events ``late_by`` newer than themselves, and duplicates, which arrive a few
  records after their original (byte-identical).
* Records mix ISO-8601 and epoch-ms timestamps; ~20 % carry no ``event_id`` (the
  contract derives one), so both paths are exercised.

Examples
--------
>>> log = generate(GeneratorConfig(users=20, events=300, seed=1))
>>> len(log.values), log.kinds.count("valid"), len(log.truth)
(300, 300, 20)
>>> generate(GeneratorConfig(users=20, events=300, seed=1)).values == log.values
True
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from segstream.core.contract import DAY_MS
from segstream.core.times import parse_as_of
from segstream.sources.personas import (
    CATEGORIES,
    CHANNELS,
    DESKTOP_PLATFORMS,
    DRIFT_MOBILE_BOOST,
    DRIFT_MOVE_SHARE,
    DRIFT_MOVES,
    MOBILE_PLATFORMS_GEN,
    PERSONA_BY_NAME,
    PERSONAS,
    Persona,
)

#: A churner stops at a uniform share of the time span in this range.
CHURN_STOPS = (0.3, 0.9)
_Event = tuple[int, int, dict[str, object]]  # (ts ms, serial, JSON body without ts/event_id)
DEFAULT_START = "2026-10-01T00:00:00Z"


@dataclass(frozen=True)
class GeneratorConfig:
    users: int = 1000
    events: int = 100_000
    seed: int = 42
    start: str = DEFAULT_START
    days: float = 30.0
    drift_at: float | None = None  # fraction of the time span where the drift happens
    drift_share: float = DRIFT_MOVE_SHARE  # share of a moving persona's users that move
    malformed_rate: float = 0.0
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    late_by_ms: int = 2 * 3600 * 1000  # how far behind the stream a late record is
    churn_share: float = 0.0  # share of users who stop coming (lapse) partway through

    def __post_init__(self) -> None:
        if self.users < 1 or self.events < self.users:
            raise ValueError(
                f"need users >= 1 and events >= users, got users={self.users}, "
                f"events={self.events}"
            )
        for name in ("malformed_rate", "duplicate_rate", "late_rate", "churn_share"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                raise ValueError(f"{name} must be within [0, 0.5], got {getattr(self, name)}")
        if not 0.0 <= self.drift_share <= 1.0:
            raise ValueError(f"drift_share must be within [0, 1], got {self.drift_share}")
        if self.drift_at is not None and not 0.0 < self.drift_at < 1.0:
            raise ValueError(f"drift_at must be within (0, 1), got {self.drift_at}")
        if self.days < 1:  # sessions are placed at hours of whole UTC days
            raise ValueError(f"days must be at least 1, got {self.days}")


@dataclass
class Truth:
    persona: str
    persona_after_drift: str
    stops_ms: int | None = None  # a churner's last possible event time (silent after)


@dataclass
class GeneratedLog:
    values: list[bytes] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    truth: dict[str, Truth] = field(default_factory=dict)
    start_ms: int = 0
    end_ms: int = 0
    drift_ms: int | None = None

    def write_jsonl(self, path: Path) -> None:
        """One record value per line (raw bytes; ``.gz`` compresses)."""
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "wb") as out:  # type: ignore[operator]
            for v in self.values:
                out.write(v + b"\n")

    def write_truth(self, path: Path) -> None:
        with open(path, "w", newline="") as out:
            w = csv.writer(out)
            w.writerow(["user_id", "persona", "persona_after_drift", "stops_ms"])
            for uid, t in self.truth.items():
                w.writerow([uid, t.persona, t.persona_after_drift,
                            "" if t.stops_ms is None else t.stops_ms])


def _expected_events(truth: Truth, days: float, drift_at: float | None) -> float:
    """Expected events of one user, before and after the drift point."""
    total = 0.0
    cut = 1.0 if drift_at is None else drift_at
    for name, lo, hi in ((truth.persona, 0.0, cut), (truth.persona_after_drift, cut, 1.0)):
        p = PERSONA_BY_NAME[name]
        first = max(lo, PERSONA_BY_NAME[truth.persona].start_late)
        total += p.sessions_per_day * days * max(hi - first, 0.0) * p.events_per_session
    return total


Record = tuple[bytes | None, bytes, str]  # (key, value, kind)


def generate(cfg: GeneratorConfig) -> GeneratedLog:
    """The whole log in memory (tests, files). See :func:`stream` to send as you go."""
    log, records = stream(cfg)
    for key, value, kind in records:
        log.keys.append(key)
        log.values.append(value)
        log.kinds.append(kind)
    return log


def stream(cfg: GeneratorConfig) -> tuple[GeneratedLog, Iterator[Record]]:
    """Plan the log (truth, event times) and return the records as an iterator.

    Encoding happens while the caller consumes the iterator, so a producer can
    send records while later ones are still being encoded. The returned
    :class:`GeneratedLog` holds the truth and time span; its record lists stay empty.
    """
    rng = np.random.default_rng(cfg.seed)
    start = parse_as_of(cfg.start)
    span = int(cfg.days * DAY_MS)
    drift_ms = None if cfg.drift_at is None else start + int(cfg.drift_at * span)

    shares = np.array([p.share for p in PERSONAS])
    persona_idx = rng.choice(len(PERSONAS), size=cfg.users, p=shares / shares.sum())
    log = GeneratedLog(start_ms=start, end_ms=start + span, drift_ms=drift_ms)
    movers = drift_ms is not None and rng.random(cfg.users) < cfg.drift_share
    cat_ps = [rng.dirichlet([PERSONAS[i].category_alpha] * len(CATEGORIES)) for i in persona_idx]
    for u in range(cfg.users):
        before = PERSONAS[persona_idx[u]]
        moves = bool(np.asarray(movers)[u]) if drift_ms is not None else False
        after = PERSONA_BY_NAME[DRIFT_MOVES[before.name]] if (
            moves and before.name in DRIFT_MOVES) else before
        log.truth[f"u{u:06d}"] = Truth(before.name, after.name)
    if cfg.churn_share > 0:  # drawn only when asked, so other logs stay byte-identical
        churners = np.flatnonzero(rng.random(cfg.users) < cfg.churn_share)
        stops = rng.uniform(CHURN_STOPS[0], CHURN_STOPS[1], len(churners))
        for u, at in zip(churners.tolist(), stops.tolist(), strict=True):
            log.truth[f"u{u:06d}"].stops_ms = start + int(at * span)
    expected = sum(_expected_events(t, cfg.days, cfg.drift_at) for t in log.truth.values())
    rate_scale = cfg.events / expected * 1.03  # a little extra, trimmed to exactly `events`
    while True:  # deterministic: the same seed always takes the same path
        events: list[_Event] = []
        for u, (uid, truth) in enumerate(log.truth.items()):
            before = PERSONA_BY_NAME[truth.persona]
            after = PERSONA_BY_NAME[truth.persona_after_drift]
            first = start + int(before.start_late * span)
            spans = [(before, first, start + span)]
            if drift_ms is not None:
                cut = max(first, drift_ms)
                spans = [(before, first, cut), (after, cut, start + span)]
            if truth.stops_ms is not None:
                spans = [(p, t0, min(t1, truth.stops_ms)) for p, t0, t1 in spans]
            for persona, t0, t1 in spans:
                if t1 > t0:
                    _user_sessions(rng, uid, persona, t0, t1, rate_scale, cat_ps[u], drift_ms,
                                   events)
        if len(events) >= cfg.events:
            break
        rate_scale *= 1.1 * cfg.events / max(len(events), 1)
    # exactly `events` valid events, chosen uniformly, in event-time order
    keep = rng.choice(len(events), size=cfg.events, replace=False)
    ts_kept = np.fromiter((events[i][0] for i in keep), dtype=np.int64, count=len(keep))
    # event-time order; ties by serial (keep's position in `events`), like sorting the tuples
    order = np.lexsort((keep, ts_kept))
    chosen = [events[i] for i in keep[order].tolist()]
    return log, _emit(rng, cfg, chosen, log.start_ms)


def _user_sessions(
    rng: np.random.Generator, uid: str, p: Persona, t0: int, t1: int, rate_scale: float,
    cat_p: np.ndarray, drift_ms: int | None, out: list[_Event],
) -> None:
    """All sessions of one user in [t0, t1), vectorised over sessions and events."""
    n_sessions = int(rng.poisson(p.sessions_per_day * rate_scale * (t1 - t0) / DAY_MS))
    if n_sessions == 0:
        return
    r = rng.random(n_sessions)
    # session days follow a density ∝ exp(trend * u) over the span (u in [0, 1])
    u = np.log1p(r * math.expm1(p.trend)) / p.trend if abs(p.trend) > 1e-9 else r
    day_start = t0 + (u * (t1 - t0)).astype(np.int64) // DAY_MS * DAY_MS
    prime = rng.random(n_sessions) < p.prime_time
    hours = np.where(prime, rng.integers(18, 23, n_sessions), _OFF_PEAK_HOURS[
        rng.integers(0, len(_OFF_PEAK_HOURS), n_sessions)])
    starts = day_start + hours * 3_600_000 + rng.integers(0, 3_600_000, n_sessions)
    mobile_p = p.mobile + np.where(starts >= (drift_ms or 2**62), DRIFT_MOBILE_BOOST, 0.0)
    mobile = rng.random(n_sessions) < np.minimum(mobile_p, 0.95)
    platforms = np.where(mobile, rng.integers(0, 3, n_sessions), 3 + rng.integers(0, 2, n_sessions))
    channels = rng.integers(0, len(CHANNELS), n_sessions)
    has_sid = rng.random(n_sessions) < 0.5

    n = 1 + rng.poisson(p.events_per_session - 1, n_sessions)
    total = int(n.sum())
    sess = np.repeat(np.arange(n_sessions), n)
    first = np.concatenate(([0], np.cumsum(n)[:-1]))
    gaps = rng.exponential(p.gap_mean_s * 1000, total).astype(np.int64)
    gaps[first] = 0
    csum = np.cumsum(gaps)
    ts = (starts[sess] + csum - csum[first][sess]).tolist()
    types = list(p.event_mix)
    type_p = np.array(list(p.event_mix.values()))
    ev_types = rng.choice(len(types), size=total, p=type_p / type_p.sum()).tolist()
    cats = rng.choice(len(CATEGORIES), size=total, p=cat_p).tolist()
    dwell = np.round(rng.lognormal(math.log(p.dwell_median_s * 1000), p.dwell_sigma, total), 1)
    amount = np.round(rng.lognormal(math.log(p.amount_median), 0.4, total), 2)
    content = rng.integers(0, 200, total).tolist()
    page_dwell = (rng.random(total) < 0.5).tolist()
    dwell_l, amount_l, sess_l = dwell.tolist(), amount.tolist(), sess.tolist()
    starts_l = starts.tolist()
    in_span = [t0 <= t < t1 for t in starts_l]
    plat_l = [_PLATFORMS[i] for i in platforms.tolist()]
    chan_l = [CHANNELS[i] for i in channels.tolist()]
    sid_l = [f"{uid}-s{t // 1000}" if has else None
             for t, has in zip(starts_l, has_sid.tolist(), strict=True)]
    for i in range(total):
        s = sess_l[i]
        if not in_span[s]:
            continue
        et = types[ev_types[i]]
        ev: dict[str, object] = {
            "user_id": uid, "event_type": et, "platform": plat_l[s], "channel": chan_l[s],
        }
        if sid_l[s]:
            ev["session_id"] = sid_l[s]
        if et in _CONTENT_EVENTS:
            cat = CATEGORIES[cats[i]]
            ev["category"] = cat
            ev["content_id"] = _CONTENT_IDS[cats[i]][content[i]]
            if et != "page_view" or page_dwell[i]:
                ev["dwell_ms"] = dwell_l[i]
        elif et in _COMMERCE_EVENTS:
            ev["category"] = CATEGORIES[cats[i]]
            if et == "purchase":
                ev["amount"] = amount_l[i]
        out.append((ts[i], len(out), ev))


_CONTENT_IDS = tuple(tuple(f"{cat}-{n}" for n in range(200)) for cat in CATEGORIES)
_OFF_PEAK_HOURS = np.array([7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 23])
_PLATFORMS = (*MOBILE_PLATFORMS_GEN, *DESKTOP_PLATFORMS)
_CONTENT_EVENTS = frozenset({"content_view", "play", "page_view"})
_COMMERCE_EVENTS = frozenset({"add_to_cart", "purchase"})


def _to_record(ts: int, serial: int, body: dict[str, object], iso_ts: str | None,
               with_id: bool) -> bytes:
    """Encode an event; sets ``ts`` and ``event_id`` on ``body`` itself (no copy)."""
    body["ts"] = iso_ts if iso_ts is not None else ts
    if with_id:
        body["event_id"] = f"e{serial:08d}-{body['user_id']}"
    return orjson.dumps(body)


def _iso(ts_ms: list[int]) -> list[str]:
    """Event ``ts`` texts: ISO-8601 UTC with milliseconds, vectorised (``format_time``
    per event would cost ~8 µs each)."""
    text = np.datetime_as_string(np.asarray(ts_ms, dtype="datetime64[ms]"), unit="ms")
    return [t + "Z" for t in text.tolist()]


_MALFORMED: tuple[tuple[str, bytes], ...] = (
    ("missing_field", b'{"ts":"2026-10-02T10:00:00Z","event_type":"page_view"}'),
    ("empty_field", b'{"user_id":"","ts":"2026-10-02T10:00:00Z","event_type":"page_view"}'),
    ("bad_timestamp", b'{"user_id":"u_bad","ts":"yesterday","event_type":"page_view"}'),
    ("negative_number",
     b'{"user_id":"u_bad","ts":"2026-10-02T10:00:00Z","event_type":"play","dwell_ms":-5}'),
    ("wrong_type", b'{"user_id":"u_bad","ts":"2026-10-02T10:00:00Z","event_type":"purchase",'
                   b'"amount":"ten"}'),
    ("invalid_json", b'{"user_id":"u_bad","ts":'),
    ("not_an_object", b'["u_bad","2026-10-02T10:00:00Z","page_view"]'),
    ("invalid_utf8", b'{"user_id":"u_\xff\xfe","ts":"2026-10-02T10:00:00Z","event_type":"x"}'),
)


def _emit(rng: np.random.Generator, cfg: GeneratorConfig, events: list[_Event],
          start_ms: int) -> Iterator[Record]:
    n = len(events)
    ts_all = [e[0] for e in events]
    iso_text = _iso(ts_all)
    late_text = _iso([t - cfg.late_by_ms for t in ts_all]) if cfg.late_rate else iso_text
    iso = (rng.random(n) < 0.8).tolist()
    with_id = (rng.random(n) < 0.8).tolist()
    dup = (rng.random(n) < cfg.duplicate_rate).tolist()
    dup_after = rng.integers(1, 50, n).tolist()
    late = (rng.random(n) < cfg.late_rate).tolist()
    bad = (rng.random(n) < cfg.malformed_rate).tolist()
    bad_kind = rng.integers(0, len(_MALFORMED), n).tolist()
    pending_dups: list[tuple[int, bytes, bytes]] = []  # (emit at index, key, value)
    for i, (ts, serial, body) in enumerate(events):
        key = str(body["user_id"]).encode()
        value = _to_record(ts, serial, body, iso_text[i] if iso[i] else None, with_id[i])
        yield key, value, "valid"
        if dup[i]:
            pending_dups.append((i + dup_after[i], key, value))
            pending_dups.sort()
        while pending_dups and pending_dups[0][0] <= i:
            _, k, v = pending_dups.pop(0)
            yield k, v, "duplicate"
        if late[i] and ts - cfg.late_by_ms >= start_ms:
            old = {**body, "event_type": "page_view"}
            old.pop("event_id", None)
            late_value = _to_record(ts - cfg.late_by_ms, 10_000_000 + i, old,
                                    late_text[i] if iso[i] else None, True)
            yield key, late_value, "late"
        if bad[i]:
            yield None, _MALFORMED[bad_kind[i]][1], "malformed"
    for _, k, v in pending_dups:
        yield k, v, "duplicate"


def iter_jsonl(path: Path) -> Iterator[bytes]:
    """Read back a file written by :meth:`GeneratedLog.write_jsonl`."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        for line in f:
            line = line.rstrip(b"\n")
            if line:
                yield line
