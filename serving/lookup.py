"""The lookup path, flat: every lookup of one event-loop turn in one pass.

A request (one user's segment or features, or a batch of ids) becomes a :class:`Job`
and waits on its future. The first job of a turn schedules :meth:`Lookups._flush`
behind the handlers already woken in that turn, so the flush sees every job the turn
made, and does for all of them at once what each would do alone:

1. one pipelined Redis read (``HMGET key agg n ts upd`` per id, one write, one reply);
2. one decode of the records (``frombuffer``, one version and params check);
3. the as-of time of each row (default now; an explicit time before a user's newest
   event fails that job only, 422);
4. one evaluation of the rows as of their times (``evaluate``; ``evaluate_one`` per row
   below :data:`~segstream.serving.records.VECTOR_ROWS` rows);
5. one assignment, RFM scoring and churn scoring of the segment rows under the model
   each job captured (a model swap mid-turn: each job keeps its own), one update of
   the drift window and metrics (bucket counts, not an observe per row);
6. the answers built from arrays turned into Python values once.

Rows are independent in every step, so an answer is the one the job would get alone,
to float rounding (a matrix product over several rows may round the last bits
differently); a test compares them. An error of the read (Redis down, hung) fails
every job of the flush with the same 503; a record this API cannot evaluate fails
the jobs that asked for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segstream.adapters.online_store import FIELDS
from segstream.adapters.redis_keys import feature_key
from segstream.config import Settings
from segstream.core.aggregates import FeatureParams
from segstream.core.contract import FEATURE_SPEC
from segstream.core.times import format_time
from segstream.serving import metrics
from segstream.serving.churn import ChurnHolder, churn_bodies
from segstream.serving.drift_window import DriftWindow
from segstream.serving.errors import Unavailable
from segstream.serving.model_holder import ModelHolder
from segstream.serving.predict import Served, answers, assign, rfm_body
from segstream.serving.records import (
    StoredRows,
    decode_rows,
    evaluate_rows,
    too_early,
    unreadable,
)
from segstream.serving.redis_client import AsyncRedis
from segstream.serving.redis_pipe import RedisCommandError, RedisUnavailable

_FIELDS = tuple(FIELDS)


@dataclass(slots=True)
class Job:
    """One request's ids and how to answer them; ``served`` is ``None`` for features."""

    ids: list[str]
    as_of_ms: int | None
    as_of_field: str  # the request field an as-of error names
    served: Served | None
    future: asyncio.Future[Any]
    # filled by the flush: this job's rows (positions in the flush's evaluated rows)
    rows: list[int] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass
class Lookups:
    """The lookup service of one API process (see the module docstring)."""

    settings: Settings
    redis: AsyncRedis
    holder: ModelHolder
    churn: ChurnHolder
    drift: DriftWindow
    params: FeatureParams
    now_ms: Callable[[], int | None]
    _pending: list[Job] = field(default_factory=list)
    _scheduled: bool = False  # a flush is queued for this turn
    _segment_children: dict[int, Any] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)  # the loop's refs are weak

    # --- the requests ------------------------------------------------------------
    async def segments(self, served: Served, user_ids: list[str], as_of_ms: int | None,
                       field: str) -> tuple[list[dict[str, Any]], list[str]]:
        """(answers of the users with a record, in order; ids without one)."""
        out: tuple[list[dict[str, Any]], list[str]] = await self._submit(
            user_ids, as_of_ms, field, served)
        return out

    async def features(self, user_id: str, as_of_ms: int | None
                       ) -> tuple[dict[str, Any] | None, None]:
        """The user's features body (``schemas.UserFeatures``), ``None`` without a record."""
        out: tuple[dict[str, Any] | None, None] = await self._submit(
            [user_id], as_of_ms, "query.as_of", None)
        return out

    def _submit(self, ids: list[str], as_of_ms: int | None, field: str,
                served: Served | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append(Job(ids, as_of_ms, field, served, fut))
        if not self._scheduled:  # the flush's first step runs behind this turn's
            self._scheduled = True  # handlers, so it takes every job they submit
            task = loop.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return fut

    # --- the flush ---------------------------------------------------------------
    async def _flush(self) -> None:
        self._scheduled = False
        jobs = self._pending[:]
        self._pending.clear()
        try:
            await self._serve(jobs)
        except Exception as exc:  # anything unexpected: every waiting job gets it
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)

    async def _serve(self, jobs: list[Job]) -> None:
        ids = jobs[0].ids if len(jobs) == 1 else [u for job in jobs for u in job.ids]
        try:
            replies = await self.redis.execute_many(
                [("HMGET", feature_key(u), *_FIELDS) for u in ids])
        except (RedisUnavailable, RedisCommandError) as exc:
            metrics.REDIS_ERRORS.labels("hmget").inc()
            error = Unavailable(f"the feature store is unavailable: {exc}")
            for job in jobs:
                _fail(job, error)
            return
        stored = decode_rows(replies, self.params)
        now = self.now_ms()
        now = -1 if now is None else now
        take: list[int] = []  # record of each evaluated row
        as_of: list[int] = []
        start = 0
        for job in jobs:
            end = start + len(job.ids)
            self._rows_of(job, stored, start, now, take, as_of)
            start = end
        if not take:
            x = np.zeros((0, len(FEATURE_SPEC)))
        else:
            aggs = stored.aggs if take == list(range(len(stored.aggs))) else stored.aggs[take]
            x = evaluate_rows(aggs, as_of, self.params)
        updated = [stored.updated_ms[r] for r in take]
        self._answer_segments([j for j in jobs if j.served is not None and
                               not j.future.done()], x, as_of, updated)
        for job in jobs:
            if job.served is None and not job.future.done():
                job.future.set_result((self._features_body(job, stored, x, as_of, take),
                                       None))

    def _rows_of(self, job: Job, stored: StoredRows, start: int, now: int, take: list[int],
                 as_of: list[int]) -> None:
        """Append the job's found records and their as-of times, or fail the job."""
        if job.future.done():  # the request went away
            return
        row, last = stored.row, stored.last_ms
        mine: list[tuple[int, int]] = []
        for user, pos in zip(job.ids, range(start, start + len(job.ids)), strict=True):
            r = row[pos]
            if r < 0:
                job.missing.append(user)
                continue
            if pos in stored.bad:
                _fail(job, unreadable(user, stored.bad[pos]))
                return
            if job.as_of_ms is None:
                mine.append((r, last[r] if last[r] > now else now))
            elif job.as_of_ms < last[r]:
                _fail(job, too_early(job.as_of_field, job.as_of_ms, user, last[r]))
                return
            else:
                mine.append((r, job.as_of_ms))
            job.found.append(user)
        first = len(take)
        for r, t in mine:
            take.append(r)
            as_of.append(t)
        job.rows = list(range(first, len(take)))

    def _answer_segments(self, jobs: list[Job], x: np.ndarray, as_of: list[int],
                         updated: list[int]) -> None:
        groups: dict[int, list[Job]] = {}
        for job in jobs:  # a model swap mid-turn: each request keeps its own model
            assert job.served is not None
            groups.setdefault(id(job.served), []).append(job)
        for group in groups.values():
            rows = [r for job in group for r in job.rows]
            served = group[0].served
            assert served is not None
            try:
                bodies = self.assign(served, x if len(rows) == len(x) else x[rows],
                                     [u for job in group for u in job.found],
                                     [updated[r] for r in rows], [as_of[r] for r in rows])
            except Exception as exc:  # each waiting request fails with the error
                for job in group:
                    _fail(job, exc)
                continue
            k = 0
            for job in group:
                n = len(job.rows)
                job.future.set_result((bodies[k:k + n], job.missing))
                k += n

    def assign(self, served: Served, x: np.ndarray, user_ids: list[Any],
               updated: list[Any], as_of: list[Any]) -> list[dict[str, Any]]:
        """Assign, score RFM and churn risk (each one call for all rows: the same
        evaluated features), observe metrics and drift, and build the answers."""
        if len(x) == 0:
            return []
        batch = assign(served, x)
        scores = served.model.rfm(x)
        churn = churn_bodies(self.churn.current, x)
        now = time.time()
        self._observe(batch.segment_ids, batch.index, batch.distances, x, updated, now)
        return answers(served, batch, x, user_ids=user_ids, as_of_ms=as_of,
                       updated_ms=updated, stale_after_s=self.settings.api_stale_after_s,
                       now=now, scores=scores, churn=churn)

    def _observe(self, segment_ids: np.ndarray, index: np.ndarray, distances: np.ndarray,
                 x: np.ndarray, updated: list[Any], now: float) -> None:
        self.drift.add(x, index)
        children = self._segment_children
        ids, counts = np.unique(segment_ids, return_counts=True)
        for seg, count in zip(ids.tolist(), counts.tolist(), strict=True):
            child = children.get(seg)
            if child is None:
                child = children[seg] = metrics.ASSIGNMENTS.labels(str(seg))
            child.inc(count)
        metrics.observe_many(metrics.DISTANCE, distances)
        written = [ms for ms in updated if ms is not None]
        if written:
            ages = now - np.asarray(written, dtype=np.float64) / 1000.0
            metrics.observe_many(metrics.STALENESS, np.maximum(ages, 0.0))

    def _features_body(self, job: Job, stored: StoredRows, x: np.ndarray, as_of: list[int],
                       take: list[int]) -> dict[str, Any] | None:
        if not job.rows:
            return None
        i = job.rows[0]
        r = take[i]
        served = self.holder.current
        upd = stored.updated_ms[r]
        row = x[i:i + 1]
        return {"user_id": job.ids[0], "as_of": format_time(as_of[i]),
                "spec_version": FEATURE_SPEC.version,
                "last_event_at": format_time(stored.last_ms[r]),
                "updated_at": format_time(upd) if upd else None,
                "features": dict(zip(FEATURE_SPEC.names, row[0].tolist(), strict=True)),
                "model_version": None if served is None else served.version,
                "rfm": None if served is None else rfm_body(served.model.rfm(row)[0])}


def _fail(job: Job, error: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(error)
    job.rows = []

