"""Segment-change detection: a small consumer of the ``features`` topic plus a sweep.

Why here and not in the streaming job's Redis sink: the streaming job is Spark and
knows no model; loading the champion into every Spark executor, reloading it there
and producing to Kafka from a foreachBatch would couple the feature pipeline to the
model registry and its release cycle. This consumer reuses serving's hot-reload
(:class:`ModelHolder`) and vectorised assignment, scales by partition, and can be
restarted or replayed independently (its offsets are in Redis).

Two triggers, one decision:

* **event**: each `features` message (key = user id, value = the user's aggregates)
  is evaluated as of the detector's clock (:class:`~segstream.serving.rescore.DetectorClock`:
  the stream time of its partition, or the wall clock; never before the user's own
  newest event);
* **time**: whenever the clock has moved ``rescore_interval_s`` since the last sweep,
  every record in Redis is re-evaluated as of the clock, so a user who stops coming
  changes segment with no message at all (:mod:`segstream.serving.rescore`).

Both assign under the champion, score RFM (``SegmentModel.rfm``) and compare with
the user's last published state ``seg:segment:{user}``: ``sid`` and ``since``, the
segment and since when (clock time ms), ``rfm`` and ``rfm_since``, the RFM group and
since when (:mod:`segstream.serving.change_state`). A change of either is a change
event; its ``changed`` says which (``["segment"]``, ``["rfm_group"]`` or both), with
the previous and new values of both (docs/api.md has the shape). Hysteresis, for each
of the two on its own: a different segment (group) is published only if the user has
been in the current one for at least ``segment_min_dwell_s`` of clock time, so a user
flapping between two produces one change per dwell period; a change held back is
published by a later event or sweep if it still holds. A user's first assignment (and
the group of a state written before groups were kept) is recorded, not published.
Changes are produced (keyed by user) and flushed before state, migration counts
(:mod:`segstream.serving.migrations`), offsets and clock are committed in one Redis
transaction: a crash republishes, never loses, and counts each change once.
``change_id`` depends only on committed state (``user:from:since:to`` for a segment
change, as before groups were kept; :func:`~segstream.serving.change_state.change_id`),
so a republished change carries the same id and receivers can dedupe.

A sweep also counts every user's RFM group as evaluated at its clock time: the
``segstream_rfm_group_users`` gauge, set when the sweep completes.

**Churn** (with a churn champion: :class:`~segstream.serving.churn.ChurnHolder`): every
evaluation also scores the churn risk of the same rows (one call per chunk or batch).
The user's band is kept in the state (``band``, ``band_since``) with the same dwell;
an entry into the high band is a change event of its own, ``changed: ["churn_band"]``
(``from_churn_band``, ``to_churn_band``, the ``churn`` body with reasons; id
:func:`~segstream.serving.change_state.churn_change_id`), not counted in the migration
matrices. With a churn model every event carries ``churn`` and the bands (without
one, events are as before). A sweep sets the
``segstream_churn_band_users`` gauge (users per band and segment id) and writes the
per-segment mean risk and high-band share into one hash
(:data:`~segstream.adapters.redis_keys.CHURN_SEGMENTS_KEY`) that the catalogue reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from segstream.adapters.kafka import Producer, Record
from segstream.adapters.redis_keys import CHURN_SEGMENTS_KEY, segment_key
from segstream.adapters.topic_reader import RedisOffsetReader
from segstream.config import Settings
from segstream.core import rfm
from segstream.core.aggregates import decode_lenient, evaluate
from segstream.core.churn_model import BANDS
from segstream.core.times import format_time
from segstream.serving import metrics, migrations
from segstream.serving.change_state import (
    HIGH_BAND,
    Move,
    band_move,
    change_id,
    churn_change_id,
    first,
    move,
    with_group,
)
from segstream.serving.churn import ChurnHolder, ServedChurn
from segstream.serving.model_holder import ModelHolder
from segstream.serving.predict import Served, rfm_body
from segstream.serving.rescore import (
    DETECTOR_NAME,
    SWEEP_CHUNK,
    DetectorClock,
    _count_skip,
    scan_chunks,
)

log = logging.getLogger(__name__)
__all__ = ["ChangeDetector"]


@dataclass
class _Sweep:
    now: int  # the clock time every record is evaluated at
    chunks: Iterator[tuple[list[str], np.ndarray, list[bytes | None]]]
    started: float  # perf_counter
    users: int = 0
    published: int = 0
    groups: Counter[str] = field(default_factory=Counter)  # evaluated RFM group: users
    bands: Counter[tuple[int, str]] = field(default_factory=Counter)  # (segment, band)
    risk_sum: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    churn: ServedChurn | None = None  # the churn model of the sweep's first chunk


@dataclass
class Decision:
    changes: list[dict[str, Any]]  # to publish, in row order
    state: dict[str, bytes]  # the new state of the users whose state changed, by key
    groups: list[str]  # each row's evaluated RFM group
    segments: list[int] = field(default_factory=list)  # each row's evaluated segment
    bands: list[str] | None = None  # each row's churn band (None: no churn model)
    risks: list[float] | None = None  # each row's churn risk


def _is_cluster(client: Any) -> bool:
    from redis import RedisCluster

    return isinstance(client, RedisCluster)


def _mget(client: Any, keys: list[str]) -> list[bytes | None]:
    """MGET; on a cluster the keys span slots, so one GET per key in a pipeline."""
    if not _is_cluster(client):
        return list(client.mget(keys))
    return list(client.mget_nonatomic(keys))


class ChangeDetector:
    def __init__(self, settings: Settings, holder: ModelHolder, redis: Any,
                 bootstrap: str, churn: ChurnHolder | None = None) -> None:
        self.settings = settings
        self.holder = holder
        self.churn = churn if churn is not None else ChurnHolder(None, None)
        self.redis = redis
        self.cluster = _is_cluster(redis)
        self.params = settings.feature_params()
        self.reader = RedisOffsetReader(bootstrap, settings.topic_features, redis,
                                        DETECTOR_NAME)
        self.clock = DetectorClock(settings.clock, settings.rescore_interval_s,
                                   redis.hgetall(self.reader.key))
        self.producer = Producer(bootstrap)
        self.dwell_ms = int(settings.segment_min_dwell_s * 1000)
        self._sweep: _Sweep | None = None
        self.sweep_chunk_size = SWEEP_CHUNK

    def _served(self) -> Served:
        served = self.holder.current
        if served is None:
            raise RuntimeError("no champion model loaded; cannot detect segment changes")
        return served

    def decide(self, served: Served, users: list[str], x: np.ndarray, now: np.ndarray,
               as_of: np.ndarray, trigger: str, stored: list[bytes | None] | None = None
               ) -> Decision:
        """The changes to publish and the users' new state (only the users whose state
        changed). Rows are in order; ``stored`` is the users' state if already read."""
        if not users:
            return Decision([], {}, [])
        batch = served.model.assign(x)
        scores = served.model.rfm(x)
        churn = self.churn.current
        risk: list[float] | None = None
        bands: list[str] | None = None
        if churn is not None:
            cs = churn.score(x, reasons=0)
            risk, bands = cs.risk.tolist(), cs.bands
        events: list[int] = []  # the row of each change
        uniq = list(dict.fromkeys(users))
        if stored is None or len(uniq) != len(users):
            stored = _mget(self.redis, [segment_key(u) for u in uniq])
        state = {u: (orjson.loads(v) if v else None) for u, v in zip(uniq, stored,
                                                                      strict=True)}
        changed: set[str] = set()
        changes = []
        for i, (u, sid) in enumerate(zip(users, batch.segment_ids.tolist(), strict=True)):
            group, cur, t = scores[i][3], state[u], int(now[i])
            if cur is None:
                new = first(sid, group, t)
                state[u] = new if bands is None else band_move(new, bands[i], t,
                                                                self.dwell_ms)[0]
                changed.add(u)
                continue
            if "rfm" not in cur:
                cur = state[u] = with_group(cur, group, t)
                changed.add(u)
            m = move(cur, sid, group, t, self.dwell_ms)
            if m.held:
                metrics.SEGMENT_CHANGES_SUPPRESSED.inc(m.held)
            at = int(as_of[i])
            if bands is not None:
                new, entered = band_move(m.state, bands[i], t, self.dwell_ms)
                if new is not m.state:
                    state[u] = new
                    changed.add(u)
                if entered:
                    events.append(i)
                    row = served.row_of.get(new["sid"])
                    changes.append({
                        "change_id": churn_change_id(u, m.state, bands[i]), "user_id": u,
                        "changed": ["churn_band"],
                        "from_segment": new["sid"], "to_segment": new["sid"],
                        "persona": None if row is None else served.model.personas[row],
                        "from_rfm_group": new["rfm"], "to_rfm_group": new["rfm"],
                        "rfm": rfm_body(scores[i]),
                        "from_churn_band": m.state["band"], "to_churn_band": bands[i],
                        "model_version": served.version, "at": format_time(at),
                        "ts_ms": at, "trigger": trigger})
                m = Move({**m.state, "band": new["band"], "band_since": new["band_since"]},
                         m.segment, m.group, m.held)
            if not (m.segment or m.group):
                continue
            row = int(batch.index[i]) if m.segment else served.row_of.get(cur["sid"])
            events.append(i)
            ev: dict[str, Any] = {
                "change_id": change_id(u, cur, m, sid, group), "user_id": u,
                "changed": m.changed,
                "from_segment": cur["sid"], "to_segment": m.state["sid"],
                "persona": None if row is None else served.model.personas[row],
                "from_rfm_group": cur["rfm"], "to_rfm_group": m.state["rfm"],
                "rfm": rfm_body(scores[i]),
                "model_version": served.version, "at": format_time(at), "ts_ms": at,
                "trigger": trigger}
            if bands is not None:  # without a churn model the event is as before
                ev.update(from_churn_band=cur.get("band"), to_churn_band=m.state["band"])
            changes.append(ev)
            state[u] = m.state
            changed.add(u)
        if churn is not None and events:  # the churn body with reasons, of these rows
            for c, body in zip(changes, churn.bodies(x[events]), strict=True):
                c["churn"] = body
        return Decision(changes, {segment_key(u): orjson.dumps(state[u]) for u in changed},
                        [g for *_, g in scores], batch.segment_ids.tolist(), bands, risk)

    def _publish(self, changes: list[dict[str, Any]]) -> None:
        for c in changes:
            self.producer.send(self.settings.topic_segment_changes, orjson.dumps(c),
                               key=c["user_id"].encode())
        self.producer.flush()
        if changes:
            metrics.SEGMENT_CHANGES.labels(changes[0]["trigger"]).inc(len(changes))

    def _commit(self, new_state: dict[str, bytes], changes: list[dict[str, Any]],
                offsets: dict[str, Any] | None = None) -> None:
        """The users' new state, the migration counts of the changes just published and
        the offsets and clock (if given), in one transaction. On a cluster the state keys
        span slots: no transaction, and the state goes first, then the counts, then the
        offsets (a crash between re-reads records whose changes were already sent, with
        the same change ids, and leaves counts of the state already written uncounted)."""
        counts = migrations.bucket_counts(  # churn-band events are no migration
            c for c in changes if "segment" in c["changed"] or "rfm_group" in c["changed"])
        if self.cluster:
            if new_state:
                self.redis.mset_nonatomic(new_state)
            if counts:
                pipe = self.redis.pipeline(transaction=False)
                migrations.add_counts(pipe, counts)
                pipe.execute()
            if offsets:
                self.redis.hset(self.reader.key, mapping=offsets)
        elif new_state or counts or offsets:
            pipe = self.redis.pipeline(transaction=True)
            if new_state:
                pipe.mset(new_state)
            migrations.add_counts(pipe, counts)
            if offsets:
                pipe.hset(self.reader.key, mapping=offsets)
            pipe.execute()
        for c in changes:
            if "segment" in c["changed"]:
                metrics.MIGRATIONS.labels("segment", str(c["from_segment"]),
                                          str(c["to_segment"])).inc()
            if "rfm_group" in c["changed"]:
                metrics.MIGRATIONS.labels("rfm_group", c["from_rfm_group"],
                                          c["to_rfm_group"]).inc()

    def process(self, records: list[Record]) -> int:
        """Evaluate a polled batch of `features` messages; publish; commit. Returns the
        number of changes published."""
        served = self._served()
        keyed = [r for r in records if r.key is not None and r.value]
        if len(keyed) < len(records):
            metrics.CHANGE_RECORDS_SKIPPED.labels("no_key_or_value").inc(
                len(records) - len(keyed))
        keys = [r.key.decode() for r in keyed]  # type: ignore[union-attr]
        ok, aggs = decode_lenient(keys, [r.value for r in keyed], self.params,
                                  source=self.reader.topic, on_skip=_count_skip)
        users = [keys[i] for i in ok]
        parts = np.array([keyed[i].partition for i in ok], dtype=np.int64)
        now, local = self.clock.advance(aggs["last_ms"], parts)
        as_of = np.maximum(local, aggs["last_ms"])
        d = self.decide(served, users, evaluate(aggs, as_of, self.params), now, as_of,
                        "event")
        self._publish(d.changes)
        self._commit(d.state, d.changes,
                     {**self.reader.commit_fields(records), **self.clock.fields()})
        return len(d.changes)

    def sweep(self, now: int) -> int:
        """A whole sweep as of ``now`` at once (see :meth:`start_sweep`); returns the
        number of changes published."""
        sweep = self.start_sweep(now)
        while self.sweep_chunk() is not None:
            pass
        return sweep.published

    def start_sweep(self, now: int) -> _Sweep:
        """Begin re-evaluating every stored record as of ``now``. :meth:`step` then runs
        one chunk per poll, so feature updates keep flowing during a long sweep. The
        sweep time is committed only at the end: a crash mid-way sweeps again (a change
        already sent is sent again with the same change id)."""
        self._served()
        self._sweep = _Sweep(now, scan_chunks(self.redis, self.params, self.sweep_chunk_size),
                             time.perf_counter())
        return self._sweep

    def sweep_chunk(self) -> int | None:
        """Re-evaluate the next chunk of the sweep in progress: the changes it published,
        or ``None`` when the sweep is done (or none runs)."""
        sweep = self._sweep
        if sweep is None:
            return None
        chunk = next(sweep.chunks, None)
        if chunk is None:
            self._finish_sweep(sweep)
            return None
        users, aggs, stored = chunk
        as_of = np.maximum(aggs["last_ms"], sweep.now)
        d = self.decide(self._served(), users, evaluate(aggs, as_of, self.params),
                        np.full(len(users), sweep.now), as_of, "time", stored)
        self._publish(d.changes)
        self._commit(d.state, d.changes)
        sweep.users += len(users)
        sweep.published += len(d.changes)
        sweep.groups.update(d.groups)
        if d.bands is not None and d.risks is not None:
            sweep.churn = sweep.churn or self.churn.current
            sweep.bands.update(zip(d.segments, d.bands, strict=True))
            for seg, r in zip(d.segments, d.risks, strict=True):
                sweep.risk_sum[seg] += r
        return len(d.changes)

    def _finish_sweep(self, sweep: _Sweep) -> None:
        self._sweep = None
        self.clock.swept_ms = sweep.now
        self.redis.hset(self.reader.key, mapping=self.clock.fields())
        elapsed = time.perf_counter() - sweep.started
        metrics.RESCORE_SWEEPS.inc()
        metrics.RESCORE_USERS.inc(sweep.users)
        metrics.RESCORE_DURATION.observe(elapsed)
        # SCAN may return a key twice (rarely, while Redis rehashes): counted twice then
        for group in rfm.GROUPS:
            metrics.RFM_GROUP_USERS.labels(group).set(sweep.groups.get(group, 0))
        if sweep.churn is not None:
            self._churn_summary(sweep, sweep.churn)
        log.info("sweep as of %s: %d users in %.2f s, %d changes", format_time(sweep.now),
                 sweep.users, elapsed, sweep.published)

    def _churn_summary(self, sweep: _Sweep, churn: ServedChurn) -> None:
        """Users per band and segment (the gauge), and per segment the mean risk and the
        share in the high band into :data:`CHURN_SEGMENTS_KEY` (replaced as a whole)."""
        served = self._served()
        segments = sorted({int(s) for s in served.model.segment_ids} |
                          {seg for seg, _ in sweep.bands})
        metrics.CHURN_BAND_USERS.clear()  # segments of an older model go
        summary: dict[str, Any] = {}
        for seg in segments:
            users = sum(sweep.bands.get((seg, b), 0) for b in BANDS)
            for band in BANDS:
                metrics.CHURN_BAND_USERS.labels(str(seg), band).set(
                    sweep.bands.get((seg, band), 0))
            summary[f"s:{seg}"] = orjson.dumps({
                "users": users,
                "mean_risk": sweep.risk_sum[seg] / users if users else None,
                "high_share": sweep.bands.get((seg, HIGH_BAND), 0) / users if users else None})
        summary.update({"as_of_ms": sweep.now, "measured_ms": int(time.time() * 1000),
                        "segment_model_version": served.version,
                        "churn_model_version": churn.version, "label": churn.label,
                        "horizon_days": churn.horizon_days})
        pipe = self.redis.pipeline(transaction=not self.cluster)  # one key: one slot
        pipe.delete(CHURN_SEGMENTS_KEY)
        pipe.hset(CHURN_SEGMENTS_KEY, mapping=summary)
        pipe.execute()

    def step(self, timeout_ms: int = 500) -> tuple[int, int]:
        """One poll + process, then one chunk of a sweep (started if due): (records,
        changes). While a sweep runs the poll does not wait."""
        sweeping = self._sweep is not None
        records = self.reader.poll(0 if sweeping else timeout_ms)
        changes = self.process(records) if records else 0
        if self._sweep is None:
            now = self.clock.due()
            if now is not None:
                self.start_sweep(now)
        changes += self.sweep_chunk() or 0
        return len(records), changes

    def run(self, stop: threading.Event, poll_s: float) -> None:
        last_poll = 0.0
        while not stop.is_set():
            if time.monotonic() - last_poll > poll_s:
                self.holder.refresh()
                self.churn.refresh()
                last_poll = time.monotonic()
            if self.holder.current is None:  # nothing to assign with yet
                stop.wait(min(poll_s, 1.0))
                continue
            n, changes = self.step()
            if n or changes:
                log.debug("%d feature updates, %d segment changes", n, changes)

    def run_available_now(self, timeout_s: float = 600.0) -> int:
        """Process the topic up to its end as measured now (and any sweeps that fall
        due on the way, or at the end), then return the number of changes published."""
        self.holder.refresh()
        self.churn.refresh()
        self._served()  # fail early and clearly without a champion
        end = self.reader.end_offsets()
        deadline = time.monotonic() + timeout_s
        total = 0
        while not self.reader.reached(end):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the detector did not reach the end of "
                                   f"{self.settings.topic_features} in {timeout_s:.0f} s")
            total += self.step(200)[1]
        while self._sweep is not None:  # finish a sweep in progress
            total += self.sweep_chunk() or 0
        now = self.clock.due()
        if now is not None:
            total += self.sweep(now)
        return total

    def close(self) -> None:
        self.reader.close()
        self.producer.close()
