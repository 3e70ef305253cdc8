"""RFM served wherever a segment is: the lookup, the batch, posted features, a user's
features and the catalogue (its profile figures are the members' own), on real Redis."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from segstream.adapters.online_store import FIELDS, decode_record
from segstream.adapters.redis_keys import feature_key
from segstream.core import rfm
from segstream.core.aggregates import evaluate
from segstream.core.contract import FEATURE_SPEC
from segstream.core.segment_model import SegmentModel
from segstream.core.times import format_time
from segstream.serving.model_source import StaticSource
from segstream.serving.records import parse_as_of
from tests.support.api import Api
from tests.support.archetypes import DAY, PARAMS, archetype_sample, put_users, users_state

pytestmark = pytest.mark.redis
ROWS = {"browser": 0, "spender": 1, "owl": 2}


@pytest.fixture
def model(rfm_model_factory: Callable[..., SegmentModel]) -> SegmentModel:
    return rfm_model_factory(profiles=True)


@pytest.fixture
def api(api_factory: Callable[..., Api], redis_client: Any, model: SegmentModel) -> Api:
    put_users(redis_client, ROWS)
    return api_factory(StaticSource(model, "1"))


def _expected(redis_client: Any, model: SegmentModel, user: str, as_of: str
              ) -> dict[str, Any]:
    """The RFM of the user's stored record evaluated at ``as_of``, computed here."""
    rec = decode_record(redis_client.hmget(feature_key(user), FIELDS), PARAMS)
    assert rec is not None
    t = parse_as_of(as_of, "as_of")
    assert t is not None
    r, f, m, group = model.rfm(evaluate(rec.aggregates, t, PARAMS))[0]
    return {"r": r, "f": f, "m": m, "group": group}


def test_lookup_batch_and_features_answer_the_rfm_of_the_features_they_evaluated(
    api: Api, redis_client: Any, model: SegmentModel,
) -> None:
    one = {u: httpx.get(f"{api.url}/v1/users/{u}/segment", headers=api.headers).json()
           for u in ROWS}
    assert one["spender"]["rfm"] == {"r": 5, "f": 5, "m": 5, "group": "Champions"}
    for user in ("browser", "owl"):  # never bought: Prospect, no scores
        assert one[user]["rfm"] == {"r": None, "f": None, "m": None, "group": "Prospect"}
    for user, body in one.items():
        assert body["rfm"] == _expected(redis_client, model, user, body["as_of"]), user

    batch = httpx.post(f"{api.url}/v1/users/segments:batch", headers=api.headers,
                       json={"user_ids": list(ROWS)}).json()["results"]
    assert [a["rfm"] for a in batch] == [one[u]["rfm"] for u in ROWS]

    feats = httpx.get(f"{api.url}/v1/users/spender/features", headers=api.headers).json()
    assert feats["model_version"] == "1" and feats["rfm"] == one["spender"]["rfm"]
    assert feats["features"]["has_purchased"] == 1.0


@pytest.mark.parametrize(("days", "scores"), [
    (5, {"r": 3, "f": 5, "m": 5, "group": "Loyal"}),
    (40, {"r": 1, "f": 5, "m": 5, "group": "Can't Lose Them"}),
])
def test_rfm_ages_with_as_of_like_the_features(api: Api, redis_client: Any, model: SegmentModel,
                                               days: int, scores: dict[str, Any]) -> None:
    """Recency grows with no event: R falls, and with it the group."""
    rec = decode_record(redis_client.hmget(feature_key("spender"), FIELDS), PARAMS)
    assert rec is not None
    at = format_time(rec.last_event_ms + days * DAY)
    for path in ("segment", "features"):
        body = httpx.get(f"{api.url}/v1/users/spender/{path}", params={"as_of": at},
                         headers=api.headers).json()
        assert body["rfm"] == scores == _expected(redis_client, model, "spender", at), path
    batch = httpx.post(f"{api.url}/v1/users/segments:batch", headers=api.headers,
                       json={"user_ids": ["spender"], "as_of": at}).json()
    assert batch["results"][0]["rfm"] == scores


def test_cold_start_is_a_prospect_and_posted_features_are_scored(api: Api) -> None:
    cold = httpx.get(f"{api.url}/v1/users/nobody/segment?default=true",
                     headers=api.headers).json()
    assert cold["cold_start"] and cold["rfm"] == {"r": None, "f": None, "m": None,
                                                  "group": "Prospect"}
    state = users_state({"s": 1}, 1_790_000_000_000)
    x = evaluate(state.aggs, int(state.aggs["last_ms"][0]) + 6 * DAY, PARAMS)[0]
    posted = {n: (None if np.isnan(v) else float(v))
              for n, v in zip(FEATURE_SPEC.names, x, strict=True)}
    body = httpx.post(f"{api.url}/v1/segments/assign", json=posted,
                      headers=api.headers).json()
    assert body["rfm"] == {"r": 3, "f": 5, "m": 5, "group": "Loyal"}
    posted.update(has_purchased=0.0, purchase_recency_days=None, avg_order_value=None)
    body = httpx.post(f"{api.url}/v1/segments/assign", json=posted,
                      headers=api.headers).json()
    assert body["rfm"]["group"] == "Prospect" and body["rfm"]["r"] is None


def test_features_without_a_model_have_no_rfm(api_factory: Callable[..., Api],
                                              redis_client: Any) -> None:
    put_users(redis_client, {"spender": 1})
    api = api_factory(StaticSource())
    r = httpx.get(f"{api.url}/v1/users/spender/features", headers=api.headers)
    assert r.status_code == 200, r.text
    assert r.json()["rfm"] is None and r.json()["model_version"] is None


def test_catalogue_shows_the_members_figures_kpis_and_rfm_groups(api: Api,
                                                                  model: SegmentModel) -> None:
    """Medians and quartiles of the members' own values (computed here from the rows the
    profiles were built on), never the centroid; RFM group counts of the members."""
    X, labels = archetype_sample()
    groups = np.array([g for *_, g in model.rfm(X)], dtype=object)
    body = httpx.get(f"{api.url}/v1/segments", headers=api.headers).json()
    assert body["model_version"] == "1"
    spend = FEATURE_SPEC.index("lifetime_spend")
    for row, seg in enumerate(body["segments"]):
        members = labels == row
        profile = model.profiles[row]
        assert seg["segment_id"] == model.segment_ids[row]
        assert seg["persona"] == model.personas[row]
        assert seg["description"] == profile["description"] and seg["description"]
        assert seg["kpis"] == profile["kpis"]
        assert seg["kpis"]["users"] == members.sum()
        assert list(seg["members"]) == list(FEATURE_SPEC.names)
        recency = seg["members"]["recency_days"]
        q25, med, q75 = np.percentile(X[members, 0], [25, 50, 75])
        assert (recency["q25"], recency["median"], recency["q75"]) == pytest.approx(
            (q25, med, q75))
        assert recency["n"] == members.sum()
        buyers = members & (X[:, FEATURE_SPEC.index("has_purchased")] == 1.0)
        stats = seg["members"]["lifetime_spend"]
        assert stats["n"] == buyers.sum()  # a purchase feature describes the buyers
        if buyers.any():
            assert stats["median"] == pytest.approx(float(np.median(X[buyers, spend])))
        else:
            assert stats["median"] is None
        want = Counter(groups[members].tolist())
        got = {g["group"]: g["users"] for g in seg["rfm_groups"]}
        assert list(got) == list(rfm.GROUPS)
        assert got == {g: want.get(g, 0) for g in rfm.GROUPS}
        assert sum(got.values()) == members.sum()
        assert {g["group"]: g["definition"] for g in seg["rfm_groups"]} == rfm.DEFINITIONS
        assert "centroid_z" not in seg["profile"] and "kpis" not in seg["profile"]
        assert seg["profile"]["distinguishing"] == profile["distinguishing"]
    spender = body["segments"][1]
    assert {g["group"] for g in spender["rfm_groups"] if g["users"]} <= {"Champions"}
    assert spender["kpis"]["buyer_share"] == 1.0
    one = httpx.get(f"{api.url}/v1/segments/{model.segment_ids[1]}", headers=api.headers)
    assert one.json() == spender


def test_the_openapi_schema_declares_rfm_with_its_groups(api: Api) -> None:
    schema = httpx.get(f"{api.url}/openapi.json").json()["components"]["schemas"]
    group = schema["Rfm"]["properties"]["group"]
    assert group["enum"] == list(rfm.GROUPS)
    for name in ("r", "f", "m"):
        kinds = schema["Rfm"]["properties"][name]["anyOf"]
        assert {"type": "integer", "minimum": 1, "maximum": 5} in kinds
        assert {"type": "null"} in kinds
    assert "rfm" in schema["SegmentAnswer"]["required"]
    assert "rfm" in schema["UserFeatures"]["properties"]
    for name in ("kpis", "members", "rfm_groups", "description"):
        assert name in schema["SegmentInfo"]["properties"], name
