"""Lookups by user, batch and posted features, and their 4xx paths (real Redis)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from segstream.adapters.online_store import FIELDS, decode_record
from segstream.adapters.redis_keys import feature_key
from segstream.core.aggregates import evaluate
from segstream.core.contract import FEATURE_SPEC
from segstream.serving.records import parse_as_of
from tests.support.api import Api
from tests.support.archetypes import PARAMS, put_users, users_state
from tests.support.models import PERSONAS, SEGMENT_IDS, make_model

pytestmark = pytest.mark.redis
ROWS = {"user-0": 0, "user-1": 1, "user-2": 2}


@pytest.fixture
def api(api_factory: Callable[..., Api], redis_client: Any) -> Api:
    put_users(redis_client, ROWS)
    return api_factory()


def test_lookup_returns_segment_persona_probabilities_reasons(api: Api, redis_client: Any
                                                              ) -> None:
    r = httpx.get(f"{api.url}/v1/users/user-1/segment", headers=api.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == "user-1"
    assert body["segment_id"] == SEGMENT_IDS[1]
    assert body["persona"] == PERSONAS[1]
    assert set(body["probabilities"]) == {str(s) for s in SEGMENT_IDS}
    assert body["probabilities"]["20"] > 0.9
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-9
    assert body["reasons"] and body["reasons"][0]["feature"] in FEATURE_SPEC.names
    assert body["model_version"] == "1"
    assert body["feature_spec"] == FEATURE_SPEC.version
    assert body["stale"] is False and body["features_updated_at"].endswith("+00:00")
    # the answer is the model's assignment of the record evaluated at the reported as_of
    rec = decode_record(redis_client.hmget(feature_key("user-1"), FIELDS), PARAMS)
    assert rec is not None
    as_of = parse_as_of(body["as_of"], "as_of")
    assert as_of is not None and as_of >= rec.last_event_ms
    expect = make_model().assign(evaluate(rec.aggregates, as_of, PARAMS))
    assert body["distance"] == pytest.approx(float(expect.distances[0]), rel=1e-9)


def test_every_prototype_lands_in_its_own_segment(api: Api) -> None:
    got = [httpx.get(f"{api.url}/v1/users/user-{i}/segment", headers=api.headers)
           .json()["segment_id"] for i in range(3)]
    assert got == list(SEGMENT_IDS)


def test_stale_features_are_flagged(api_factory: Callable[..., Api], redis_client: Any
                                    ) -> None:
    put_users(redis_client, {"old": 0}, updated_ms=1_000_000_000_000)
    api = api_factory(api_stale_after_s=60)
    assert httpx.get(f"{api.url}/v1/users/old/segment", headers=api.headers).json()["stale"]


def test_unknown_user_404_names_the_field_and_default_gives_cold_start(api: Api) -> None:
    r = httpx.get(f"{api.url}/v1/users/nobody/segment", headers=api.headers)
    assert r.status_code == 404
    assert r.json()["error"]["field"] == "path.user_id"
    assert "nobody" in r.json()["error"]["message"]
    r = httpx.get(f"{api.url}/v1/users/nobody/segment?default=true", headers=api.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["cold_start"] is True
    assert body["segment_id"] == SEGMENT_IDS[0]  # the largest segment (profiles' size)


def test_configured_cold_start_segment(api_factory: Callable[..., Api]) -> None:
    api = api_factory(api_cold_start_segment=30)
    r = httpx.get(f"{api.url}/v1/users/nobody/segment?default=1", headers=api.headers)
    assert r.json()["segment_id"] == 30 and r.json()["persona"] == PERSONAS[2]


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_missing_or_wrong_key_is_401_json(api: Api, headers: dict[str, str]) -> None:
    r = httpx.get(f"{api.url}/v1/users/user-1/segment", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.json()["error"]["field"] == "header.X-API-Key"


def test_any_of_several_keys_is_accepted(api_factory: Callable[..., Api], redis_client: Any
                                         ) -> None:
    put_users(redis_client, {"u": 0})
    api = api_factory(api_keys=["first-key-aaaa", "second-key-bbbb"])
    for key in ("first-key-aaaa", "second-key-bbbb"):
        r = httpx.get(f"{api.url}/v1/users/u/segment", headers={"X-API-Key": key})
        assert r.status_code == 200


def test_auth_off_only_by_explicit_setting(api_factory: Callable[..., Api], redis_client: Any
                                           ) -> None:
    put_users(redis_client, {"u": 0})
    api = api_factory(api_auth_enabled=False)
    assert httpx.get(f"{api.url}/v1/users/u/segment").status_code == 200


def test_batch_one_round_trip_results_and_missing(api: Api) -> None:
    ids = ["user-2", "ghost", "user-0", "user-1"]
    r = httpx.post(f"{api.url}/v1/users/segments:batch", json={"user_ids": ids},
                   headers=api.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [a["user_id"] for a in body["results"]] == ["user-2", "user-0", "user-1"]
    assert [a["segment_id"] for a in body["results"]] == [30, 10, 20]
    assert body["missing"] == ["ghost"]


def test_batch_over_the_limit_is_413_naming_the_field(api_factory: Callable[..., Api]) -> None:
    api = api_factory(api_max_batch_ids=5)
    r = httpx.post(f"{api.url}/v1/users/segments:batch",
                   json={"user_ids": [f"u{i}" for i in range(6)]}, headers=api.headers)
    assert r.status_code == 413
    assert r.json()["error"]["field"] == "body.user_ids"
    r = httpx.post(f"{api.url}/v1/users/segments:batch", json={"user_ids": []},
                   headers=api.headers)
    assert r.status_code == 422


def test_body_over_the_byte_limit_is_413(api_factory: Callable[..., Api]) -> None:
    api = api_factory(api_max_body_bytes=2048)
    big = {"user_ids": ["x" * 100] * 50}
    r = httpx.post(f"{api.url}/v1/users/segments:batch", json=big, headers=api.headers)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_assign_posted_features_with_defaults(api: Api) -> None:
    state = users_state({"s": 1}, 1_790_000_000_000)
    spender = evaluate(state.aggs, int(state.aggs["last_ms"][0]) + 60_000, PARAMS)[0]
    changed = {name: float(spender[j]) for j, name in enumerate(FEATURE_SPEC.names)
               if spender[j] != FEATURE_SPEC.defaults[j]}
    r = httpx.post(f"{api.url}/v1/segments/assign", json=changed, headers=api.headers)
    assert r.status_code == 200, r.text
    assert r.json()["segment_id"] == 20 and r.json()["user_id"] is None
    assert r.json()["as_of"] is None
    # a feature not posted takes its spec default: {} answers as the posted defaults do
    defaults = {f.name: None if f.nullable else f.default for f in FEATURE_SPEC.features}
    empty = httpx.post(f"{api.url}/v1/segments/assign", json={}, headers=api.headers).json()
    full = httpx.post(f"{api.url}/v1/segments/assign", json=defaults,
                      headers=api.headers).json()
    assert empty["segment_id"] == full["segment_id"]
    assert empty["distance"] == full["distance"]


@pytest.mark.parametrize(("payload", "field"), [
    ({FEATURE_SPEC.names[0]: "many"}, f"body.{FEATURE_SPEC.names[0]}"),
    ({FEATURE_SPEC.names[0]: -1}, f"body.{FEATURE_SPEC.names[0]}"),
    ({"no_such_feature": 1}, "body.no_such_feature"),
    ({next(f.name for f in FEATURE_SPEC.features if f.kind == "ratio"): 1.5},
     "body." + next(f.name for f in FEATURE_SPEC.features if f.kind == "ratio")),
])
def test_assign_422_names_field_and_reason(api: Api, payload: dict[str, Any], field: str
                                           ) -> None:
    r = httpx.post(f"{api.url}/v1/segments/assign", json=payload, headers=api.headers)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == field
    assert err["details"][0]["reason"]


def test_malformed_json_and_wrong_types_are_4xx_not_500(api: Api) -> None:
    r = httpx.post(f"{api.url}/v1/segments/assign", content=b"{nope",
                   headers={**api.headers, "content-type": "application/json"})
    assert r.status_code == 422
    r = httpx.post(f"{api.url}/v1/users/segments:batch", json={"user_ids": "u1"},
                   headers=api.headers)
    assert r.status_code == 422 and r.json()["error"]["field"] == "body.user_ids"
    r = httpx.get(f"{api.url}/v1/users/{'x' * 300}/segment", headers=api.headers)
    assert r.status_code == 422 and r.json()["error"]["field"] == "path.user_id"
    r = httpx.get(f"{api.url}/v1/nowhere", headers=api.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_catalogue_and_one_segment(api: Api) -> None:
    r = httpx.get(f"{api.url}/v1/segments", headers=api.headers)
    assert r.status_code == 200
    segs = r.json()["segments"]
    assert [s["segment_id"] for s in segs] == list(SEGMENT_IDS)
    assert [s["share"] for s in segs] == [0.5, 0.3, 0.2]
    assert segs[1]["templates"]["homepage"] == ["homepage-big-spenders"]
    r = httpx.get(f"{api.url}/v1/segments/30", headers=api.headers)
    assert r.json()["persona"] == PERSONAS[2]
    r = httpx.get(f"{api.url}/v1/segments/99", headers=api.headers)
    assert r.status_code == 404 and r.json()["error"]["field"] == "path.segment_id"


def test_health_ready_docs(api: Api) -> None:
    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{api.url}/readyz")
    assert r.status_code == 200 and r.json()["details"]["model_version"] == "1"
    assert r.json()["details"]["redis"] is True
    assert httpx.get(f"{api.url}/docs").status_code == 200
    schema = httpx.get(f"{api.url}/openapi.json").json()
    assert "/v1/users/{user_id}/segment" in schema["paths"]
    for path in ("/v1/users/{user_id}/segment", "/v1/users/{user_id}/features"):
        params = {p["name"] for p in schema["paths"][path]["get"]["parameters"]}
        assert "as_of" in params, path
    assert "as_of" in schema["components"]["schemas"]["BatchRequest"]["properties"]
    feats = schema["components"]["schemas"]["FeatureValues"]["properties"]
    assert list(feats) == list(FEATURE_SPEC.names)
    assert set(FEATURE_SPEC.names) <= set(
        schema["components"]["schemas"]["SessionFeatures"]["properties"])


def test_readyz_503_without_redis(api_factory: Callable[..., Api]) -> None:
    from segstream.sources.stack import free_port

    api = api_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    r = httpx.get(f"{api.url}/readyz")
    assert r.status_code == 503
    assert r.json()["details"]["redis"] is False
    r = httpx.get(f"{api.url}/v1/users/u/segment", headers=api.headers)
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"


def test_no_model_means_not_ready() -> None:
    from segstream.serving.model_source import StaticSource

    assert StaticSource().champion_version() is None


@pytest.mark.parametrize(("path", "field"), [
    ("/v1/users/user-1/segment?default=maybe", "query.default"),
    ("/v1/users/" + "x" * 257 + "/segment", "path.user_id"),
    ("/v1/users/" + "x" * 257 + "/features", "path.user_id"),
    ("/v1/users/user-1/features?as_of=soon", "query.as_of"),
])
def test_raw_routes_validate_like_their_signature(api: Api, path: str, field: str) -> None:
    r = httpx.get(api.url + path, headers=api.headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert httpx.get(f"{api.url}/v1/users/{'x' * 256}/segment?default=yes",
                     headers=api.headers).json()["cold_start"] is True  # the bounds
