"""Lookups of one event-loop turn are read, evaluated and assigned together, and answer
as alone."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from segstream.config import Settings
from segstream.core.contract import FEATURE_SPEC, PURCHASED
from segstream.core.segment_model import reason_dicts
from segstream.core.times import format_time
from segstream.serving.churn import ChurnHolder
from segstream.serving.drift_window import DriftWindow
from segstream.serving.errors import InvalidInput
from segstream.serving.lookup import Lookups
from segstream.serving.metrics import DISTANCE_BUCKETS, observe_many
from segstream.serving.model_holder import ModelHolder
from segstream.serving.model_source import StaticSource
from segstream.serving.predict import Served, reason_lists
from segstream.serving.redis_client import open_redis
from tests.support.api import Api
from tests.support.archetypes import PARAMS, archetype_sample, put_users
from tests.support.models import make_model


class CountingRedis:
    """The API's own client on the test Redis, counting its round trips."""

    def __init__(self, url: str) -> None:
        self.client = open_redis(url)
        self.calls: list[int] = []

    async def execute(self, *args: Any) -> Any:
        return await self.client.execute(*args)

    async def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.calls.append(len(commands))
        return await self.client.execute_many(commands)

    async def close(self) -> None:
        await self.client.close()


@pytest.mark.redis
def test_one_read_per_turn_each_job_its_model_and_its_own_errors(
        redis_url: str, redis_client: Any) -> None:
    state = put_users(redis_client, {"u0": 0, "u1": 1, "u2": 2})
    last = int(state.aggs["last_ms"].max())
    settings = Settings(redis_url=redis_url)
    a, b = (Served.build(make_model(), v, PARAMS) for v in ("1", "2"))

    async def main() -> tuple[list[Any], list[int]]:
        redis = CountingRedis(redis_url)
        holder = ModelHolder(StaticSource(make_model(), "1"), PARAMS)
        holder.refresh()
        lookups = Lookups(settings, redis, holder, ChurnHolder(None, None),
                          DriftWindow(100, len(FEATURE_SPEC)), PARAMS, lambda: None)
        got = await asyncio.gather(
            lookups.segments(a, ["u0", "nobody", "u1"], None, "body.as_of"),
            lookups.segments(b, ["u2"], last + 1000, "query.as_of"),
            lookups.features("u1", None),
            lookups.features("nobody", None),
            lookups.segments(a, ["u2", "u0"], last - 10 * 86_400_000, "body.as_of"),
            return_exceptions=True)
        await redis.close()
        return list(got), redis.calls

    got, calls = asyncio.run(main())
    assert calls == [8]  # one pipelined read for every id of the turn
    (answers, missing), (alone, none_missing), (feats, _), (no_feats, _), early = got
    assert [x["user_id"] for x in answers] == ["u0", "u1"] and missing == ["nobody"]
    assert {x["model_version"] for x in answers} == {"1"}
    assert alone[0]["model_version"] == "2" and none_missing == []
    assert alone[0]["as_of"] == format_time(last + 1000)
    assert feats is not None and feats["user_id"] == "u1" and no_feats is None
    # clock unknown (event clock before the detector's first tick): the user's own time
    assert answers[0]["as_of"] == format_time(int(state.aggs["last_ms"][0]))
    assert isinstance(early, InvalidInput) and early.field == "body.as_of"


def test_reasons_of_all_rows_are_those_of_each_row() -> None:
    base = make_model()
    rng = np.random.default_rng(7)
    # centroids moved at random: a never-buyer's purchase features (scaled to 0) then
    # weigh for one centroid or the other, and must be skipped as reasons
    pre = dataclasses.replace(base.preprocessor, given=np.array(FEATURE_SPEC.given_columns))
    model = dataclasses.replace(base, preprocessor=pre, centroids=base.centroids + rng.normal(
        0, 0.5, base.centroids.shape))
    sample, _ = archetype_sample()
    # the archetypes, mixtures of two users (near no centroid: few positive weights) and
    # buyers' rows with the purchase flag cleared (their purchase features explain nothing)
    mixed = (sample + sample[rng.permutation(len(sample))]) / 2
    unflagged = sample.copy()
    unflagged[:, FEATURE_SPEC.index(PURCHASED)] = 0.0
    X = np.vstack([sample, mixed, unflagged])
    for top in (3, len(FEATURE_SPEC)):  # every feature: the stop at a weight <= 0 too
        a = model.assign(X, reasons=top)
        lists = reason_lists(model, a, X)
        assert lists == [reason_dicts(model, a, i, X[i]) for i in range(len(X))]
    given = model.preprocessor.given_columns
    skipped = [c for i in range(len(X)) for c, w in zip(a.reason_cols[i].tolist(),
                                                       a.reason_weights[i].tolist(),
                                                       strict=True)
               if w > 0 and given[c] >= 0 and not X[i, given[c]] > 0.5]
    assert skipped, "no purchase feature of a never-buyer was a candidate reason"


def test_observe_many_is_observe_one_by_one() -> None:
    values = np.array([0.0, 0.25, 0.3, 1.0, 7.0, 15.0, 99.0, 0.25, 3.1])
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("d", "d", buckets=DISTANCE_BUCKETS, registry=one)
    h2 = Histogram("d", "d", buckets=DISTANCE_BUCKETS, registry=many)
    for v in values.tolist():
        h1.observe(v)
    observe_many(h2, values)
    observe_many(h2, values[:0])

    def samples(registry: CollectorRegistry) -> list[Any]:
        return [(s.name, s.labels, s.value) for m in registry.collect() for s in m.samples
                if not s.name.endswith("_created")]

    assert samples(many) == samples(one)


@pytest.mark.redis
def test_concurrent_lookups_answer_as_alone(api_factory: Callable[..., Api],
                                            redis_client: Any) -> None:
    users = {f"u{i}": i % 3 for i in range(12)}
    state = put_users(redis_client, users)
    api = api_factory()
    at = format_time(int(state.aggs["last_ms"].max()) + 3_600_000)

    def path(u: str) -> str:
        return f"/v1/users/{u}/segment?as_of={at.replace('+', '%2B')}"

    alone = {u: httpx.get(api.url + path(u), headers=api.headers).json() for u in users}

    async def together() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=api.url, headers=api.headers,
                                     limits=httpx.Limits(max_connections=24)) as c:
            rs = await asyncio.gather(*(c.get(path(u)) for u in list(users) * 2))
        return [r.json() for r in rs]

    for body in asyncio.run(together()):
        one = alone[body["user_id"]]
        # a matrix product over several rows may round differently from one row's
        assert _close(body, one), (body, one)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-300)
    return bool(a == b)
