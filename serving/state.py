"""What one API process holds; lookups go through :mod:`segstream.serving.lookup`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segstream.config import Settings
from segstream.core.aggregates import FeatureParams
from segstream.serving import metrics
from segstream.serving.churn import ChurnHolder
from segstream.serving.drift_window import DriftWindow
from segstream.serving.errors import InvalidInput, NotFound, Unavailable
from segstream.serving.lookup import Lookups
from segstream.serving.model_holder import ModelHolder
from segstream.serving.personalization import Mapping
from segstream.serving.predict import PROSPECT, Served, rfm_body
from segstream.serving.records import wall_ms
from segstream.serving.redis_client import AsyncRedis
from segstream.serving.redis_pipe import RedisCommandError, RedisUnavailable


@dataclass
class AppState:
    settings: Settings
    redis: AsyncRedis
    holder: ModelHolder
    mapping: Mapping
    drift: DriftWindow
    churn: ChurnHolder = field(default_factory=lambda: ChurnHolder(None, None))
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    params: FeatureParams = field(init=False)  # built once: records are decoded with it
    stream_ms: int | None = None  # clock = event: the detector's stream time (polled)
    lookups: Lookups = field(init=False)

    def __post_init__(self) -> None:
        self.params = self.settings.feature_params()
        self.lookups = Lookups(self.settings, self.redis, self.holder, self.churn,
                               self.drift, self.params, self.now_ms)

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

    # --- lookups ---------------------------------------------------------------
    async def lookup(self, user_ids: list[str], as_of_ms: int | None = None,
                     field: str = "body.as_of") -> tuple[list[dict[str, Any]], list[str]]:
        """Segments of the users with a record, as of ``as_of_ms`` (default now), and
        the ids without one."""
        return await self.lookups.segments(self.served(), user_ids, as_of_ms, field)

    def assign_rows(self, served: Served, x: np.ndarray) -> list[dict[str, Any]]:
        """Answers for posted feature rows (no user, no stored record)."""
        n = len(x)
        return self.lookups.assign(served, x, [None] * n, [None] * n, [None] * n)

    async def features_of(self, user_id: str, as_of_ms: int | None) -> dict[str, Any]:
        """The user's named feature values as of ``as_of_ms`` (default now); no model
        needed."""
        body, _ = await self.lookups.features(user_id, as_of_ms)
        if body is None:
            raise NotFound(f"no features stored for user {user_id!r}", field="path.user_id")
        return body

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
        answers, _ = await self.lookups.segments(self.served(), [user_id], as_of_ms,
                                                 "query.as_of")
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
