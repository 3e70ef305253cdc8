"""Fuzzed HTTP: schemathesis against the API's own OpenAPI schema, every operation, API
key on, on a real uvicorn server with a real Redis holding users' records.

Every answer must be no 5xx (but a declared 503), a declared status code, the declared
content type and body schema (error bodies included: one ``ErrorBody`` for every
error status), invalid input rejected with a 4xx, valid input accepted. The two hot
lookup routes parse their own parameters (serving/routes/raw.py); their answers are
checked against their declared ``response_model`` here like any other route's.

The schema is loaded from the app object at import (schemathesis's lazy
``from_fixture`` loader reads ``Node._nodeid``, which pytest 9.2 no longer has), and
a test checks that it is the schema the server serves. Generation is deterministic
(fixed seed, derandomized, no example database), so a CI failure replays locally.

The focused tests below pin each defect the fuzzing found, so each fails without its
fix whatever the generator draws.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest
import schemathesis
from schemathesis import Case

from segstream.config import Settings
from segstream.core.contract import FEATURE_SPEC
from segstream.core.segment_model import SegmentModel
from segstream.core.times import format_time
from segstream.serving.app import create_app
from segstream.serving.churn import StaticChurnSource
from segstream.serving.model_source import StaticSource
from tests.support.api import API_KEY, run_api
from tests.support.archetypes import put_users
from tests.support.churn_models import make_churn_model
from tests.support.models import SEGMENT_IDS
from tests.support.servers import flushed_redis

pytestmark = [pytest.mark.redis]

MAPPING = """
experiments:
  hp-test: {holdout: 0.5}
placements:
  homepage:
    experiment: hp-test
    default: [home-generic]
    segments:
      "20": [home-vip]
"""
USERS = {f"fz{i}": i % 3 for i in range(6)}
HEADERS = {"X-API-Key": API_KEY}
# a migrations window is at most 31 days up to `until` (default now): known good starts
SINCE = [format_time(int(time.time() * 1000) - h * 3_600_000) for h in (1, 30, 700)]
OPENAPI = create_app(Settings(api_keys=[API_KEY])).openapi()
CONFIG = schemathesis.Config.from_dict({
    "seed": 11,
    "headers": HEADERS,
    # ~100 requests per operation (plus the coverage phase): ~10 s in all here
    "generation": {"max-examples": 100, "deterministic": True, "database": "none"},
    # known values part of the time, so lookups reach stored records and configured
    # experiments, not only 404s
    "dictionaries": {"users": {"values": list(USERS)},
                     "segments": {"values": list(SEGMENT_IDS)},
                     "experiments": {"values": ["hp-test"]},
                     "placements": {"values": ["homepage"]},
                     "since": {"values": SINCE}},
    "parameters": {"path.user_id": {"dictionary": "users", "probability": 0.5},
                   "body.user_id": {"dictionary": "users", "probability": 0.5},
                   "body.user_ids[*]": {"dictionary": "users", "probability": 0.5},
                   "path.segment_id": {"dictionary": "segments", "probability": 0.5},
                   "path.experiment_id": {"dictionary": "experiments", "probability": 0.7},
                   "body.experiment_id": {"dictionary": "experiments", "probability": 0.7},
                   "query.placement": {"dictionary": "placements", "probability": 0.7},
                   "query.since": {"dictionary": "since", "probability": 0.7}},
    "operations": [{
        # schema-valid yet refused by meaning, as documented: an `as_of` before the
        # user's newest event or not ISO 8601 (a free string in the schema), a
        # placement that is not configured, a migrations window that is not one or
        # longer than 31 days
        "include-path-regex":
            r"/(segment|features|personalization|segments:batch|segments/migrations)$",
        "checks": {"positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "404", "422"]}},
    }],
})
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)
STATUSES: Counter[tuple[str, int]] = Counter()  # (operation, status) answered in test_api


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory, redis_url: str, kafka_bootstrap: str,
            rfm_model_factory: Callable[..., SegmentModel]) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("fuzz-api")
    mapping = tmp / "mapping.yaml"
    mapping.write_text(MAPPING)
    redis = flushed_redis(redis_url)
    put_users(next(redis), USERS)
    settings = Settings(data_dir=tmp / "data", redis_url=redis_url,
                        kafka_bootstrap=kafka_bootstrap, api_keys=[API_KEY],
                        api_personalization_file=mapping)
    # RFM scores and training's profiles in the answers the schema is checked against
    # and churn risk (tests/support/churn_models.py)
    with run_api(settings, StaticSource(rfm_model_factory(profiles=True), "1"),
                 StaticChurnSource(make_churn_model(), "1")) as url:
        yield url
    redis.close()


def test_the_fuzzed_schema_is_the_served_one(api_url: str) -> None:
    assert httpx.get(f"{api_url}/openapi.json").json() == OPENAPI


@schema.parametrize()
def test_api(case: Case, api_url: str) -> None:
    response = case.call_and_validate(base_url=api_url)
    if case.method.upper() == case.operation.method.upper():
        STATUSES[(case.operation.label, response.status_code)] += 1


def test_the_fuzzing_reached_every_operation_with_success() -> None:
    """Stored users, segments and experiments were found: every operation answered 2xx
    at least once (not a run of 404s and 422s)."""
    if not STATUSES:
        pytest.skip("test_api did not run in this session")
    labels = {f"{m.upper()} {p}" for p, ops in OPENAPI["paths"].items() for m in ops}
    ok = {label for (label, status), _ in STATUSES.items() if 200 <= status < 300}
    assert ok == labels, sorted(labels - ok)


def test_every_error_status_declares_the_error_body() -> None:
    """4xx/5xx of /v1 declare ``ErrorBody`` (FastAPI's default 422 body is
    ``{"detail": [...]}``, which this API never sends)."""
    ref = "#/components/schemas/ErrorBody"
    for path, ops in OPENAPI["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if int(status) >= 400:
                    got = resp.get("content", {}).get("application/json", {}).get("schema")
                    assert got == {"$ref": ref}, (method, path, status)
    assert "HTTPValidationError" not in OPENAPI["components"]["schemas"]


# --- defects found by the fuzzing, one focused test each ----------------------------

def test_405_names_the_allowed_methods(api_url: str) -> None:
    """RFC 9110: a 405 carries Allow (the error handler dropped Starlette's header)."""
    r = httpx.request("TRACE", f"{api_url}/v1/segments", headers=HEADERS)
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert "allowed: GET" in r.json()["error"]["message"]


def test_get_on_the_post_only_assign_is_405_not_a_segment_id(api_url: str) -> None:
    """GET /v1/segments/assign matched /v1/segments/{segment_id} and answered 422 "not
    an integer"; the resource exists and takes POST only."""
    r = httpx.get(f"{api_url}/v1/segments/assign", headers=HEADERS)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = httpx.get(f"{api_url}/v1/segments/{SEGMENT_IDS[0]}", headers=HEADERS)
    assert r.status_code == 200 and r.json()["segment_id"] == SEGMENT_IDS[0]
    r = httpx.get(f"{api_url}/v1/segments/abc", headers=HEADERS)
    assert r.status_code == 404 and "/v1/segments/abc" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/segments/assign", "/v1/users/segments:batch",
                                  "/v1/conversions"])
def test_a_body_that_is_not_utf8_is_422_naming_the_body(api_url: str, path: str) -> None:
    """FastAPI answers an undecodable JSON body with a bare, undeclared 400."""
    r = httpx.post(api_url + path, content=b'{"user_ids": ["\xff"]}',
                   headers={**HEADERS, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "body" and "utf-8" in err["message"].lower()


@pytest.mark.parametrize("value", [False, True, "3"])
def test_a_feature_that_is_not_a_json_number_is_422(api_url: str, value: object) -> None:
    """The schema says number; lax validation took true/false as 1/0 and "3" as 3."""
    name = FEATURE_SPEC.names[0]
    r = httpx.post(f"{api_url}/v1/segments/assign", json={name: value}, headers=HEADERS)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == f"body.{name}"
    r = httpx.post(f"{api_url}/v1/conversions", headers=HEADERS,
                   json={"user_id": "fz0", "experiment_id": "hp-test", "value": value})
    assert r.status_code == 422 and r.json()["error"]["field"] == "body.value"


def test_unknown_experiment_is_a_declared_404(api_url: str) -> None:
    for method, path, body in (("post", "/v1/conversions",
                                {"user_id": "fz0", "experiment_id": "nope"}),
                               ("get", "/v1/experiments/{experiment_id}/uplift", None)):
        assert "404" in OPENAPI["paths"][path][method]["responses"], path
        r = httpx.request(method, api_url + path.replace("{experiment_id}", "nope"),
                          json=body, headers=HEADERS)
        assert r.status_code == 404, r.text


def test_conversion_values_are_bounded_so_uplift_sums_stay_numbers(api_url: str) -> None:
    """Two values near the float maximum summed (in Redis) past it: the uplift report
    answered ``"value": null`` where the schema promises a number."""
    r = httpx.get(f"{api_url}/v1/users/fz1/personalization", params={"placement": "homepage"},
                  headers=HEADERS)
    assert r.status_code == 200
    body = {"user_id": "fz1", "experiment_id": "hp-test", "value": 1.7e308}
    r = httpx.post(f"{api_url}/v1/conversions", json=body, headers=HEADERS)
    assert r.status_code == 422 and r.json()["error"]["field"] == "body.value"
    body["value"] = 1e12
    assert httpx.post(f"{api_url}/v1/conversions", json=body, headers=HEADERS).status_code == 201
    report = httpx.get(f"{api_url}/v1/experiments/hp-test/uplift", headers=HEADERS).json()
    for arm in ("treatment", "control"):
        assert isinstance(report["overall"][arm]["value"], float)
