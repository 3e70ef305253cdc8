"""As-of evaluation on the read path (real Redis, real uvicorn): API parity with
aggregates.evaluate, users who age without events, 422s for as_of, 503 for records of
other feature params, and the model/params guard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from segstream.adapters.online_store import encode_record
from segstream.adapters.redis_keys import feature_key
from segstream.core.aggregates import FeatureParams, evaluate
from segstream.core.contract import FEATURE_SPEC
from segstream.core.times import format_time
from segstream.serving.model_source import StaticSource
from segstream.serving.predict import ModelParamsMismatch, Served
from segstream.serving.records import parse_as_of
from tests.support.api import Api
from tests.support.archetypes import DAY, HOUR, PARAMS, put_users
from tests.support.models import SEGMENT_IDS, make_model

pytestmark = pytest.mark.redis
END = 1_748_811_600_000  # 2025-06-01T21:00Z: every user's newest event
ROWS = {"shopper": 0, "spender": 1, "owl": 2}
ASKED = [END, END + 1, END + 5 * HOUR + 17, END + 3 * DAY, END + 45 * DAY + 123,
         END + 400 * DAY]


@pytest.fixture
def stored(redis_client: Any) -> Any:
    return put_users(redis_client, ROWS, end_ms=END, seed=11)


def _features(api: Api, user: str, as_of: str | None = None) -> httpx.Response:
    params = {} if as_of is None else {"as_of": as_of}
    return httpx.get(f"{api.url}/v1/users/{user}/features", params=params,
                     headers=api.headers)


def test_features_as_of_equal_aggregates_evaluate(api_factory: Callable[..., Api],
                                                  stored: Any) -> None:
    api = api_factory()
    for i, user in enumerate(stored.users):
        for t in ASKED:
            r = _features(api, str(user), format_time(t))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["user_id"] == user and body["as_of"] == format_time(t)
            assert body["spec_version"] == FEATURE_SPEC.version
            assert body["last_event_at"] == format_time(END)
            assert list(body["features"]) == list(FEATURE_SPEC.names)
            expect = evaluate(stored.aggs[i:i + 1], t, PARAMS)[0]
            got = np.array([np.nan if body["features"][n] is None else body["features"][n]
                            for n in FEATURE_SPEC.names], dtype=float)
            np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)
            # a feature with no value is null in JSON, and only where the spec says so
            nulls = {n for n, v in body["features"].items() if v is None}
            assert nulls <= {f.name for f in FEATURE_SPEC.features if f.nullable}
            assert bool(nulls) == (body["features"]["has_purchased"] == 0.0)
    # time passes with no event: recency grows day for day, the trend keeps falling
    far = [_features(api, "owl", format_time(END + d * DAY)).json()["features"]
           for d in (1, 30, 90)]
    assert [round(f["recency_days"], 9) for f in far] == [1.0, 30.0, 90.0]
    trend = [f["engagement_trend"] for f in far]
    assert trend[0] > trend[1] > trend[2] > -1.0


def test_default_as_of_is_now_and_answers_follow_as_of(
    api_factory: Callable[..., Api], stored: Any,
) -> None:
    import time

    api = api_factory()
    before = int(time.time() * 1000)
    body = _features(api, "spender").json()
    as_of = parse_as_of(body["as_of"], "as_of")
    assert as_of is not None and before <= as_of <= time.time() * 1000  # now
    i = list(stored.users).index("spender")
    expect = evaluate(stored.aggs[i:i + 1], as_of, PARAMS)[0]
    np.testing.assert_allclose([body["features"][n] for n in FEATURE_SPEC.names], expect,
                               rtol=1e-12, atol=1e-12)
    model = make_model()
    for t in (END + HOUR, END + 200 * DAY):
        r = httpx.get(f"{api.url}/v1/users/spender/segment", params={"as_of": format_time(t)},
                      headers=api.headers)
        assert r.status_code == 200, r.text
        a = model.assign(evaluate(stored.aggs[i:i + 1], t, PARAMS))
        assert r.json()["as_of"] == format_time(t)
        assert r.json()["segment_id"] == int(a.segment_ids[0])
        assert r.json()["distance"] == pytest.approx(float(a.distances[0]), rel=1e-9)
    batch = httpx.post(f"{api.url}/v1/users/segments:batch", headers=api.headers,
                       json={"user_ids": ["owl", "nobody", "shopper"],
                             "as_of": format_time(END + HOUR)}).json()
    assert batch["missing"] == ["nobody"]
    assert [a["segment_id"] for a in batch["results"]] == [SEGMENT_IDS[2], SEGMENT_IDS[0]]
    assert {a["as_of"] for a in batch["results"]} == {format_time(END + HOUR)}


def test_an_event_ahead_of_the_clock_is_evaluated_at_its_own_time(
    api_factory: Callable[..., Api], redis_client: Any,
) -> None:
    import time

    ahead = int(time.time() * 1000) + 2 * HOUR  # the validator accepts up to a day of skew
    put_users(redis_client, {"early-bird": 0}, end_ms=ahead)
    api = api_factory()
    body = _features(api, "early-bird").json()
    assert body["as_of"] == format_time(ahead) and body["features"]["recency_days"] == 0.0
    assert httpx.get(f"{api.url}/v1/users/early-bird/segment",
                     headers=api.headers).status_code == 200


@pytest.mark.parametrize("route", ["features", "segment"])
@pytest.mark.parametrize(("as_of", "why"), [
    (format_time(END - 1), "before the newest event"), ("yesterday", "neither ISO-8601"),
    ("2026-13-01T00:00:00Z", "neither ISO-8601"), ("1969-12-31T23:59:59Z", "before 1970"),
])
def test_bad_as_of_is_422_naming_the_field(api_factory: Callable[..., Api], stored: Any,
                                           route: str, as_of: str, why: str) -> None:
    api = api_factory()
    r = httpx.get(f"{api.url}/v1/users/spender/{route}", params={"as_of": as_of},
                  headers=api.headers)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "query.as_of" and why in err["message"]
    if why.startswith("before the newest"):
        # an unencoded '+' offset arrives as a space: the 422 says so
        r = httpx.get(f"{api.url}/v1/users/spender/{route}?as_of={format_time(END)}",
                      headers=api.headers)
        assert r.status_code == 422 and "%2B" in r.json()["error"]["message"]
        assert "'spender'" in err["message"] and format_time(END) in err["message"]


def test_batch_as_of_before_a_users_event_is_422_naming_the_body_field(
    api_factory: Callable[..., Api], stored: Any,
) -> None:
    api = api_factory()
    for as_of in (format_time(END - DAY), "soon"):
        r = httpx.post(f"{api.url}/v1/users/segments:batch", headers=api.headers,
                       json={"user_ids": ["owl", "shopper"], "as_of": as_of})
        assert r.status_code == 422 and r.json()["error"]["field"] == "body.as_of"


def test_record_of_other_feature_params_is_503_naming_both(
    api_factory: Callable[..., Api], redis_client: Any, stored: Any,
) -> None:
    other = FeatureParams(half_life_short_days=3.0)
    agg = stored.aggs[0]
    redis_client.hset(feature_key("foreign"), mapping=encode_record(agg, other,
                                                                    updated_ms=END))
    api = api_factory()
    for method, path, body in (
        ("GET", "/v1/users/foreign/features", None),
        ("GET", "/v1/users/foreign/segment", None),
        ("POST", "/v1/users/segments:batch", {"user_ids": ["owl", "foreign"]}),
    ):
        r = httpx.request(method, api.url + path, json=body, headers=api.headers)
        assert r.status_code == 503, (path, r.text)
        msg = r.json()["error"]["message"]
        assert "'foreign'" in msg, msg
        assert f"{other.fingerprint:08x}" in msg and f"{PARAMS.fingerprint:08x}" in msg
    assert _features(api, "owl").status_code == 200  # the others still answer


def test_features_need_no_model(api_factory: Callable[..., Api], stored: Any) -> None:
    api = api_factory(StaticSource())  # an empty registry
    assert _features(api, "owl").status_code == 200
    assert httpx.get(f"{api.url}/v1/users/owl/segment",
                     headers=api.headers).status_code == 503
    r = _features(api, "nobody")
    assert r.status_code == 404 and r.json()["error"]["field"] == "path.user_id"


def test_model_of_other_or_unrecorded_params_is_refused(
    api_factory: Callable[..., Api], stored: Any,
) -> None:
    other = FeatureParams(session_gap_minutes=45.0)
    with pytest.raises(ModelParamsMismatch, match=f"{other.fingerprint}.*"
                       f"{PARAMS.fingerprint}"):
        Served.build(make_model(params=other), "3", PARAMS)
    with pytest.raises(ModelParamsMismatch, match=r"records no feature_params.*retrain"):
        Served.build(make_model(params=None), "4", PARAMS)
    Served.build(make_model(), "5", PARAMS)  # the same params: served
    api = api_factory(StaticSource(make_model(params=None), "4"))
    ready = httpx.get(f"{api.url}/readyz")
    assert ready.status_code == 503
    assert "retrain" in ready.json()["details"]["registry_error"]


def test_event_clock_evaluates_at_the_detectors_stream_time(
    api_factory: Callable[..., Api], redis_client: Any, stored: Any,
) -> None:
    import time

    from segstream.serving.rescore import CLOCK_STREAM, DETECTOR_KEY

    api = api_factory(clock="event")
    # no stream time yet: each user as of their own newest event, not the wall clock
    assert _features(api, "owl").json()["as_of"] == format_time(END)
    redis_client.hset(DETECTOR_KEY, CLOCK_STREAM, END + 30 * DAY)  # the detector's clock
    deadline = time.monotonic() + 10
    while _features(api, "owl").json()["as_of"] != format_time(END + 30 * DAY):
        assert time.monotonic() < deadline, "the API did not follow the stream time"
        time.sleep(0.1)
    body = _features(api, "owl").json()
    assert body["features"]["recency_days"] == 30.0
    seg = httpx.get(f"{api.url}/v1/users/owl/segment", headers=api.headers).json()
    assert seg["as_of"] == format_time(END + 30 * DAY)
