"""Churn risk beside the segment: the lookup, the batch and posted features answer the
churn champion's risk of the same evaluated row (real Redis, a real uvicorn server)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from segstream.adapters.online_store import FIELDS, decode_record
from segstream.adapters.redis_keys import feature_key
from segstream.core.aggregates import FeatureParams, evaluate
from segstream.core.churn_model import ChurnModel
from segstream.core.contract import FEATURE_SPEC
from segstream.core.times import format_time
from segstream.serving.churn import ChurnHolder, StaticChurnSource
from segstream.serving.records import parse_as_of
from tests.support.api import Api
from tests.support.archetypes import DAY, PARAMS, put_users
from tests.support.churn_models import make_churn_model

pytestmark = pytest.mark.redis
ROWS = {"user-0": 0, "user-1": 1, "user-2": 2}
KEYS = {"risk", "band", "reasons", "model_version", "label", "horizon_days"}


@pytest.fixture
def churn() -> ChurnModel:
    return make_churn_model()


@pytest.fixture
def api(api_factory: Callable[..., Api], redis_client: Any, churn: ChurnModel) -> Api:
    put_users(redis_client, ROWS)
    return api_factory(churn=StaticChurnSource(churn, "7"))


def _expected(redis_client: Any, churn: ChurnModel, user: str, as_of_iso: str
              ) -> tuple[float, str, list[str]]:
    rec = decode_record(redis_client.hmget(feature_key(user), FIELDS), PARAMS)
    assert rec is not None
    as_of = parse_as_of(as_of_iso, "as_of")
    assert as_of is not None
    s = churn.score(evaluate(rec.aggregates, as_of, PARAMS))
    return float(s.risk[0]), s.bands[0], s.reasons[0]


def test_lookup_answers_the_churn_of_the_same_row(api: Api, redis_client: Any,
                                                  churn: ChurnModel) -> None:
    for user in ROWS:
        body = httpx.get(f"{api.url}/v1/users/{user}/segment", headers=api.headers).json()
        c = body["churn"]
        assert set(c) == KEYS
        risk, band, reasons = _expected(redis_client, churn, user, body["as_of"])
        assert c["risk"] == pytest.approx(risk, rel=1e-12)
        assert c["band"] == band and c["reasons"] == reasons
        assert len(c["reasons"]) <= 3 and all(isinstance(t, str) for t in c["reasons"])
        assert c["model_version"] == "7" and c["label"] == "activity"
        assert c["horizon_days"] == 14


def test_a_silent_users_risk_rises_with_as_of(api: Api, redis_client: Any,
                                              churn: ChurnModel) -> None:
    rec = decode_record(redis_client.hmget(feature_key("user-1"), FIELDS), PARAMS)
    assert rec is not None
    risks, bands = [], []
    for days in (0, 3, 10, 40, 100):
        at = format_time(rec.last_event_ms + days * DAY)
        body = httpx.get(f"{api.url}/v1/users/user-1/segment", params={"as_of": at},
                         headers=api.headers).json()
        assert body["as_of"] == at
        risks.append(body["churn"]["risk"])
        bands.append(body["churn"]["band"])
        assert body["churn"]["risk"] == pytest.approx(
            _expected(redis_client, churn, "user-1", at)[0], rel=1e-12)
    assert risks == sorted(risks) and risks[-1] > risks[0] + 0.5, risks
    assert bands[0] != "high" and bands[-1] == "high"
    assert any(t.startswith("no visit for 100 days")
               for t in body["churn"]["reasons"]), body["churn"]["reasons"]


def test_batch_and_posted_features_carry_churn(api: Api, redis_client: Any,
                                               churn: ChurnModel) -> None:
    at = format_time(int(parse_as_of("2030-01-01T00:00:00Z", "x") or 0))
    r = httpx.post(f"{api.url}/v1/users/segments:batch", headers=api.headers,
                   json={"user_ids": [*ROWS, "nobody"], "as_of": at})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [a["user_id"] for a in results] == list(ROWS)
    for a in results:
        risk, band, reasons = _expected(redis_client, churn, a["user_id"], at)
        assert (a["churn"]["risk"], a["churn"]["band"], a["churn"]["reasons"]) == (
            pytest.approx(risk, rel=1e-12), band, reasons)
    posted = {"recency_days": 50.0, "engagement_trend": -0.5}
    body = httpx.post(f"{api.url}/v1/segments/assign", headers=api.headers,
                      json=posted).json()
    x = np.array([[posted.get(f.name, f.default) if not f.nullable else np.nan
                   for f in FEATURE_SPEC.features]])
    expect = churn.score(x)
    assert body["churn"]["risk"] == pytest.approx(float(expect.risk[0]), rel=1e-12)
    assert body["churn"]["band"] == "high"


def test_without_a_churn_model_churn_is_null_and_ready(api_factory: Callable[..., Api],
                                                       redis_client: Any) -> None:
    put_users(redis_client, ROWS)
    api = api_factory()
    body = httpx.get(f"{api.url}/v1/users/user-1/segment", headers=api.headers).json()
    assert "churn" in body and body["churn"] is None
    cold = httpx.get(f"{api.url}/v1/users/nobody/segment?default=true",
                     headers=api.headers).json()
    assert cold["churn"] is None
    ready = httpx.get(f"{api.url}/readyz")
    assert ready.status_code == 200 and ready.json()["details"]["churn_model_version"] is None


def test_a_churn_model_of_other_params_is_refused_with_a_logged_reason(
        api_factory: Callable[..., Api], redis_client: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    put_users(redis_client, ROWS)
    other = make_churn_model(params=FeatureParams(session_gap_minutes=5.0))
    with caplog.at_level(logging.WARNING, logger="segstream.serving.churn"):
        api = api_factory(churn=StaticChurnSource(other, "3"))
        body = httpx.get(f"{api.url}/v1/users/user-1/segment", headers=api.headers).json()
    assert body["churn"] is None
    ready = httpx.get(f"{api.url}/readyz").json()
    assert ready["ready"] is True
    assert "refused" in ready["details"]["churn_error"]
    assert "feature params" in ready["details"]["churn_error"]
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_the_holder_hot_reloads_and_refuses_another_spec() -> None:
    source = StaticChurnSource(make_churn_model(), "1")
    holder = ChurnHolder(source, PARAMS)
    assert holder.refresh() and holder.current is not None
    assert holder.current.version == "1"
    source.promote(make_churn_model(spec_version="v0"), "2")
    assert not holder.refresh()
    assert holder.current.version == "1" and "2 refused" in (holder.last_error or "")
    assert not holder.refresh()  # the refused version is not loaded again
    source.promote(make_churn_model(), "3")
    assert holder.refresh() and holder.current.version == "3"
    assert holder.last_error is None


@pytest.mark.mlflow
def test_the_churn_champion_is_hot_reloaded_from_the_registry(
        api_factory: Callable[..., Api], settings_factory: Callable[..., Any],
        redis_client: Any) -> None:
    import time

    from segstream.adapters.registry import ChurnRegistry
    from segstream.serving.churn import RegistryChurnSource

    settings = settings_factory()
    registry = ChurnRegistry(settings)
    put_users(redis_client, ROWS)
    api = api_factory(churn=RegistryChurnSource(settings), api_model_poll_s=0.1)
    url = f"{api.url}/v1/users/user-1/segment"
    assert httpx.get(url, headers=api.headers).json()["churn"] is None  # none registered
    v1 = registry.register(make_churn_model())
    registry.set_alias(v1, "champion")
    deadline = time.monotonic() + 20
    while (body := httpx.get(url, headers=api.headers).json())["churn"] is None:
        assert time.monotonic() < deadline, "the churn champion was not picked up"
        time.sleep(0.1)
    assert body["churn"]["model_version"] == str(v1)
    # another feature params' model promoted: refused, v1 keeps serving
    v2 = registry.register(make_churn_model(params=FeatureParams(session_gap_minutes=5.0)))
    registry.set_alias(v2, "champion")
    deadline = time.monotonic() + 20
    while not (httpx.get(f"{api.url}/readyz").json()["details"]["churn_error"] or ""):
        assert time.monotonic() < deadline, "the refusal was not reported"
        time.sleep(0.1)
    assert httpx.get(url, headers=api.headers).json()["churn"]["model_version"] == str(v1)
    assert httpx.get(f"{api.url}/readyz").status_code == 200


def test_one_score_call_per_batch_and_per_turn(api_factory: Callable[..., Api],
                                               redis_client: Any) -> None:
    import asyncio

    model = make_churn_model()
    calls: list[int] = []
    score = model.score

    def counted(x: np.ndarray, reasons: int = 3) -> Any:
        calls.append(len(x))
        return score(x, reasons=reasons)

    model.score = counted  # type: ignore[method-assign]
    users = {f"v{i}": i % 3 for i in range(24)}
    put_users(redis_client, users)
    api = api_factory(churn=StaticChurnSource(model, "1"))
    r = httpx.post(f"{api.url}/v1/users/segments:batch", headers=api.headers,
                   json={"user_ids": list(users)})
    assert r.status_code == 200 and calls == [24]

    async def concurrent() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=api.url, headers=api.headers) as client:
            rs = await asyncio.gather(*(client.get(f"/v1/users/{u}/segment") for u in users))
        return [x.json() for x in rs]

    calls.clear()
    bodies = asyncio.run(concurrent())
    assert all(b["churn"] is not None for b in bodies)
    # each row scored once, with the others of its event-loop turn (how many share a
    # turn depends on the arrivals: 1 to 24 calls were seen)
    assert sum(calls) == len(users), calls
