"""What one API process holds, and the lookup service the routes share (records are
read and evaluated as of a time by :mod:`segstream.serving.records`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segstream.adapters.online_store import FIELDS, OnlineRecord
from segstream.adapters.redis_keys import feature_key
from segstream.config import Settings
from segstream.core.aggregates import FeatureParams
from segstream.core.contract import FEATURE_SPEC
from segstream.core.segment_model import Assignment
from segstream.core.times import format_time
from segstream.serving import metrics
from segstream.serving.batcher import Meta, TurnBatcher
from segstream.serving.churn import ChurnHolder, churn_bodies
from segstream.serving.drift_window import DriftWindow
from segstream.serving.errors import InvalidInput, NotFound, Unavailable
from segstream.serving.model_holder import ModelHolder
from segstream.serving.personalization import Mapping
from segstream.serving.predict import PROSPECT, Served, answer, assign, rfm_body
from segstream.serving.records import as_of_times, decode_replies, evaluate_records, wall_ms
from segstream.serving.redis_client import AsyncRedis
from segstream.serving.redis_pipe import RedisCommandError, RedisUnavailable

_HMGET = ("HMGET",)


@dataclass
class AppState:
    settings: Settings
    redis: AsyncRedis
    holder: ModelHolder
    mapping: Mapping
    drift: DriftWindow
    churn: ChurnHolder = field(default_factory=lambda: ChurnHolder(None, None))
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _assign_children: dict[str, Any] = field(default_factory=dict)
    params: FeatureParams = field(init=False)  # built once: records are decoded with it
    stream_ms: int | None = None  # clock = event: the detector's stream time (polled)
    batcher: TurnBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.params = self.settings.feature_params()
        self.batcher = TurnBatcher(self._assign_batch)

    def now_ms(self) -> int | None:
        """The default as-of time by the ``clock`` setting (``None``: not known yet)."""
        return wall_ms() if self.settings.clock == "wall" else self.stream_ms

    # --- model -----------------------------------------------------------------
    def served(self) -> Served:
        served = self.holder.current
        if served is None:
            raise Unavailable("no model loaded yet: the registry has no champion or is "
                              "unreachable (see /readyz)")
        return served

    # --- redis -----------------------------------------------------------------
    async def redis_call(self, operation: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        try:
            return await self.redis.execute_many(commands)
        except (RedisUnavailable, RedisCommandError) as exc:
            metrics.REDIS_ERRORS.labels(operation).inc()
            raise Unavailable(f"the feature store is unavailable: {exc}") from exc

    async def records(self, user_ids: list[str]) -> list[OnlineRecord | None]:
        """Every user's stored record in one pipelined round trip (503 if one was made
        with other feature params or layout)."""
        replies = await self.redis_call(
            "hmget", [(*_HMGET, feature_key(u), *FIELDS) for u in user_ids])
        return decode_replies(user_ids, replies, self.params)

    async def evaluated(self, user_ids: list[str], as_of_ms: int | None, field: str
                        ) -> tuple[list[tuple[str, OnlineRecord]], np.ndarray, np.ndarray,
                                   list[str]]:
        """(found users and records, their as-of times, their features, missing ids)."""
        records = await self.records(user_ids)
        found = [(u, r) for u, r in zip(user_ids, records, strict=True) if r is not None]
        missing = [u for u, r in zip(user_ids, records, strict=True) if r is None]
        if not found:
            return [], np.zeros(0, dtype=np.int64), np.zeros((0, len(FEATURE_SPEC))), missing
        users, recs = [u for u, _ in found], [r for _, r in found]
        as_of = as_of_times(users, recs, as_of_ms, field, self.now_ms())
        return found, as_of, evaluate_records(recs, as_of, self.params), missing

    # --- assignment ------------------------------------------------------------
    def assign_rows(self, served: Served, x: np.ndarray, user_ids: list[str | None],
                    updated: list[int | None], as_of: list[int | None]
                    ) -> list[dict[str, Any]]:
        """Assign, score RFM and churn risk (each one call for all rows: the same
        evaluated features), observe metrics and drift, and build the answers."""
        batch: Assignment = assign(served, x)
        scores = served.model.rfm(x)
        churn = churn_bodies(self.churn.current, x)
        now = time.time()
        self._observe(served, batch, x, updated, now)
        stale_after = self.settings.api_stale_after_s
        return [answer(served, batch, i, x[i], user_id=user_ids[i], as_of_ms=as_of[i],
                       updated_ms=updated[i], stale_after_s=stale_after, now=now,
                       score=scores[i], churn=churn[i])
                for i in range(len(user_ids))]

    def _observe(self, served: Served, batch: Assignment, x: np.ndarray,
                 updated: list[int | None], now: float) -> None:
        self.drift.add(x, batch.index)
        children = self._assign_children
        for seg in batch.segment_ids.tolist():
            key = str(seg)
            child = children.get(key)
            if child is None:
                child = children[key] = metrics.ASSIGNMENTS.labels(key)
            child.inc()
        for d in batch.distances.tolist():
            metrics.DISTANCE.observe(d)
        for ms in updated:
            if ms is not None:
                metrics.STALENESS.observe(max(0.0, now - ms / 1000.0))

    def _assign_batch(self, served: Served, x: np.ndarray, metas: list[Meta]
                      ) -> list[dict[str, Any]]:
        return self.assign_rows(served, x, [m[0] for m in metas], [m[1] for m in metas],
                                [m[2] for m in metas])

    async def lookup(self, user_ids: list[str], as_of_ms: int | None = None,
                     field: str = "body.as_of") -> tuple[list[dict[str, Any]], list[str]]:
        """Segments of the users with a record, as of ``as_of_ms`` (default now). One
        user's lookup is assigned together with the others of its event-loop turn."""
        served = self.served()
        found, as_of, x, missing = await self.evaluated(user_ids, as_of_ms, field)
        if not found:
            return [], missing
        if len(found) == 1:
            (user, rec), = found
            return [await self.batcher.submit(served, x[0], (user, rec.updated_ms,
                                                             int(as_of[0])))], missing
        answers = self.assign_rows(served, x, [u for u, _ in found],
                                   [r.updated_ms for _, r in found], as_of.tolist())
        return answers, missing

    async def features_of(self, user_id: str, as_of_ms: int | None) -> dict[str, Any]:
        """The user's named feature values as of ``as_of_ms`` (default now); no model
        needed."""
        found, as_of, x, _ = await self.evaluated([user_id], as_of_ms, "query.as_of")
        if not found:
            raise NotFound(f"no features stored for user {user_id!r}", field="path.user_id")
        rec = found[0][1]
        served = self.holder.current
        return {"user_id": user_id, "as_of": format_time(int(as_of[0])),
                "spec_version": FEATURE_SPEC.version,
                "last_event_at": format_time(rec.last_event_ms),
                "updated_at": format_time(rec.updated_ms) if rec.updated_ms else None,
                "features": dict(zip(FEATURE_SPEC.names, x[0].tolist(), strict=True)),
                "model_version": None if served is None else served.version,
                "rfm": None if served is None else rfm_body(served.model.rfm(x)[0])}

    def cold_start(self, user_id: str) -> dict[str, Any]:
        served = self.served()
        seg = self.settings.api_cold_start_segment
        if seg is None or seg not in served.row_of:
            seg = served.largest_segment()
        row = served.row_of[seg]
        return {
            "user_id": user_id, "segment_id": seg, "persona": served.model.personas[row],
            "probabilities": {k: (1.0 if i == row else 0.0)
                              for i, k in enumerate(served.segment_keys)},
            "distance": 0.0, "reasons": [], "model_version": served.version,
            "feature_spec": served.model.spec_version, "as_of": None,
            "features_updated_at": None,
            "stale": False, "cold_start": True, "rfm": rfm_body(PROSPECT), "churn": None,
        }

    async def segment_of(self, user_id: str, default: bool, as_of_ms: int | None = None
                         ) -> dict[str, Any]:
        answers, _ = await self.lookup([user_id], as_of_ms, "query.as_of")
        if answers:
            return answers[0]
        if default:
            return self.cold_start(user_id)
        raise NotFound(f"no features stored for user {user_id!r}; pass ?default=true for "
                       "the cold-start segment", field="path.user_id")


def check_batch_size(n: int, limit: int) -> None:
    from segstream.serving.errors import PayloadTooLarge

    if n > limit:
        raise PayloadTooLarge(f"{n} user ids in one batch; the limit is {limit} "
                              "(api_max_batch_ids)", field="body.user_ids")
    if n == 0:
        raise InvalidInput("user_ids is empty; send at least one id", field="body.user_ids")
