"""Lookups of one event-loop turn are assigned together, and answer as alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from segstream.core.times import format_time
from segstream.serving.batcher import Meta, TurnBatcher
from segstream.serving.predict import Served
from tests.support.api import Api
from tests.support.archetypes import PARAMS, put_users
from tests.support.models import make_model


def test_one_run_per_turn_grouped_by_model_errors_to_every_waiter() -> None:
    calls: list[tuple[str, int]] = []
    a, b = (Served.build(make_model(), v, PARAMS) for v in ("1", "2"))

    def run(served: Served, x: np.ndarray, metas: list[Meta]) -> list[dict[str, Any]]:
        calls.append((served.version, len(x)))
        if metas[0][0] == "boom":
            raise RuntimeError("assign failed")
        return [{"user": m[0], "row_sum": float(r.sum())} for m, r in zip(metas, x,
                                                                            strict=True)]

    async def main() -> list[Any]:
        batcher = TurnBatcher(run)
        rows = [np.full(3, float(i)) for i in range(5)]
        jobs = [batcher.submit(a if i < 3 else b, rows[i], (f"u{i}", None, None))
                for i in range(5)]
        got = await asyncio.gather(*jobs)
        failed = await asyncio.gather(batcher.submit(a, rows[0], ("boom", None, None)),
                                      batcher.submit(a, rows[1], ("x", None, None)),
                                      return_exceptions=True)
        return [got, failed]

    got, failed = asyncio.run(main())
    assert calls == [("1", 3), ("2", 2), ("1", 2)]  # one run per model per turn
    assert [g["user"] for g in got] == [f"u{i}" for i in range(5)]
    assert [g["row_sum"] for g in got] == [0.0, 3.0, 6.0, 9.0, 12.0]
    assert all(isinstance(f, RuntimeError) for f in failed)


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
