"""What one API process holds, and the lookup service the routes share."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segstream.config import Settings
from segstream.online_store import FIELDS, OnlineRecord, decode_record, feature_key
from segstream.segment_model import Assignment
from serving import metrics
from serving.drift import DriftWindow
from serving.errors import InvalidInput, NotFound, Unavailable
from serving.model_holder import ModelHolder
from serving.personalization import Mapping
from serving.predict import Served, answer, assign
from serving.redis_pipe import PipelinedRedis, RedisCommandError, RedisUnavailable

_HMGET = ("HMGET",)


@dataclass
class AppState:
    settings: Settings
    redis: PipelinedRedis
    holder: ModelHolder
    mapping: Mapping
    drift: DriftWindow
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _assign_children: dict[str, Any] = field(default_factory=dict)

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
        """Every user's stored features in one pipelined round trip."""
        replies = await self.redis_call(
            "hmget", [(*_HMGET, feature_key(u), *FIELDS) for u in user_ids])
        return [decode_record(r) for r in replies]

    # --- assignment ------------------------------------------------------------
    def assign_rows(self, served: Served, x: np.ndarray, user_ids: list[str | None],
                    updated: list[int | None]) -> list[dict[str, Any]]:
        """Assign, observe metrics and drift, and build the answers."""
        batch: Assignment = assign(served, x)
        now = time.time()
        self._observe(served, batch, x, updated, now)
        stale_after = self.settings.api_stale_after_s
        return [answer(served, batch, i, x[i], user_id=user_ids[i], updated_ms=updated[i],
                       stale_after_s=stale_after, now=now) for i in range(len(user_ids))]

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

    async def lookup(self, user_ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        served = self.served()
        records = await self.records(user_ids)
        found = [(u, r) for u, r in zip(user_ids, records, strict=True) if r is not None]
        missing = [u for u, r in zip(user_ids, records, strict=True) if r is None]
        if not found:
            return [], missing
        version = served.model.spec_version
        for u, r in found:
            if r.spec_version != version:
                raise Unavailable(f"stored features of {u!r} use feature spec "
                                  f"{r.spec_version!r}, the model needs {version!r}")
        x = found[0][1].vector[None, :] if len(found) == 1 else np.stack(
            [r.vector for _, r in found])
        answers = self.assign_rows(served, x, [u for u, _ in found],
                                   [r.updated_ms for _, r in found])
        return answers, missing

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
            "feature_spec": served.model.spec_version, "features_updated_at": None,
            "stale": False, "cold_start": True,
        }

    async def segment_of(self, user_id: str, default: bool) -> dict[str, Any]:
        answers, _ = await self.lookup([user_id])
        if answers:
            return answers[0]
        if default:
            return self.cold_start(user_id)
        raise NotFound(f"no features stored for user {user_id!r}; pass ?default=true for "
                       "the cold-start segment", field="path.user_id")


def check_batch_size(n: int, limit: int) -> None:
    from serving.errors import PayloadTooLarge

    if n > limit:
        raise PayloadTooLarge(f"{n} user ids in one batch; the limit is {limit} "
                              "(api_max_batch_ids)", field="body.user_ids")
    if n == 0:
        raise InvalidInput("user_ids is empty; send at least one id", field="body.user_ids")
