"""The change detector scores churn too: entering the high band is a change event of its
own (previous band, new band, time, the churn body), the sweep's gauge counts users per
band and segment, and the per-segment risk hash is written; real broker and Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from segstream.adapters.online_store import FIELDS, decode_record
from segstream.adapters.redis_keys import CHURN_SEGMENTS_KEY, feature_key
from segstream.config import Settings
from segstream.core.aggregates import evaluate
from segstream.core.churn_model import BANDS
from segstream.core.segment_model import SegmentModel
from segstream.core.times import format_time
from segstream.serving import metrics
from segstream.serving.model_source import StaticSource
from tests.support.api import Api
from tests.support.archetypes import DAY, HOUR, PARAMS, users_state, write_records
from tests.support.change_stream import ChangeStream
from tests.support.churn_models import make_churn_model
from tests.support.models import make_model
from tests.support.webhooks import T0

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
USERS = {"b0": 0, "s1": 1, "o2": 2, "s3": 1}


@pytest.fixture
def stream(settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
           kafka_bootstrap: str, redis_client: Any,
           rfm_model_factory: Callable[..., SegmentModel]) -> ChangeStream:
    settings = settings_factory(
        topic_features=topic_factory("features", partitions=1),
        topic_segment_changes=topic_factory("changes", partitions=1), clock="event",
        rescore_interval_s=3600, segment_min_dwell_s=0)
    write_records(redis_client, users_state(USERS, T0, seed=1))  # last active at T0
    return ChangeStream(settings, rfm_model_factory(make_model(at_ms=T0)), redis_client,
                        kafka_bootstrap, make_churn_model())


def _risk(redis_client: Any, churn: Any, user: str, as_of: int) -> tuple[float, str, list[str]]:
    rec = decode_record(redis_client.hmget(feature_key(user), FIELDS), PARAMS)
    assert rec is not None
    s = churn.score(evaluate(rec.aggregates, as_of, PARAMS))
    return float(s.risk[0]), s.bands[0], s.reasons[0]


def test_entering_the_high_band_is_an_event_and_the_sweep_counts_bands(
        stream: ChangeStream, redis_client: Any) -> None:
    s = stream
    s.at(T0)
    first = T0 + HOUR + 1
    assert s.at(first) == 0  # the first sweep records segments, groups and bands
    state = orjson.loads(redis_client.get("seg:segment:s1"))
    assert state["band"] == "low" and state["band_since"] == first
    assert not [c for c in s.published() if "churn_band" in c["changed"]]

    later = T0 + 20 * DAY  # 20 silent days: recency passes 6 of the model's steps
    s.at(later)
    entered = {c["user_id"]: c for c in s.published() if c["changed"] == ["churn_band"]}
    assert set(entered) == set(USERS)
    for user, c in entered.items():
        risk, band, reasons = _risk(redis_client, s.churn, user, later)
        assert band == "high"
        assert c["change_id"] == f"{user}:churn:low:{first}:high"
        assert (c["from_churn_band"], c["to_churn_band"]) == ("low", "high")
        assert c["ts_ms"] == later and c["trigger"] == "time"
        now_in = orjson.loads(redis_client.get(f"seg:segment:{user}"))
        assert c["from_segment"] == c["to_segment"] == now_in["sid"]  # its segment now
        assert c["churn"]["risk"] == pytest.approx(risk, rel=1e-12)
        assert c["churn"]["band"] == "high" and c["churn"]["reasons"] == reasons
        assert c["churn"]["model_version"] == "5"
        assert orjson.loads(redis_client.get(f"seg:segment:{user}"))["band"] == "high"
    # the segment / RFM-group events of the same sweep carry the bands too
    others = [c for c in s.published() if "churn_band" not in c["changed"]]
    assert all({"from_churn_band", "to_churn_band", "churn"} <= set(c) for c in others)

    # users per band and segment (as the sweep assigned them), never a user id
    seg_now = {u: orjson.loads(redis_client.get(f"seg:segment:{u}"))["sid"] for u in USERS}
    assert seg_now["s1"] == seg_now["s3"] == 20
    for sid in (10, 20, 30):
        got = {b: metrics.CHURN_BAND_USERS.labels(str(sid), b)._value.get() for b in BANDS}
        n = sum(1 for u in USERS if seg_now[u] == sid)
        assert got == {"low": 0, "medium": 0, "high": n}, (sid, got)
    text = metrics.render()[0].decode()
    assert 'segstream_churn_band_users{band="high",segment="20"} 2.0' in text
    assert '"s1"' not in text

    # the per-segment risk the catalogue reads
    summary = redis_client.hgetall(CHURN_SEGMENTS_KEY)
    seg20 = orjson.loads(summary[b"s:20"])
    mean = sum(_risk(redis_client, s.churn, u, later)[0] for u in ("s1", "s3")) / 2
    assert seg20["users"] == 2 and seg20["high_share"] == 1.0
    assert seg20["mean_risk"] == pytest.approx(mean, rel=1e-12)
    assert int(summary[b"as_of_ms"]) == later
    assert summary[b"churn_model_version"] == b"5"
    assert summary[b"segment_model_version"] == b"3"

    # still high a sweep later: no second event
    n = len(s.published())
    s.at(later + 2 * HOUR)
    assert not [c for c in s.published()[n:] if "churn_band" in c["changed"]]
    s.detector.close()


def test_the_catalogue_shows_each_segments_risk_as_of_the_last_sweep(
        stream: ChangeStream, redis_client: Any, api_factory: Callable[..., Api],
        rfm_model_factory: Callable[..., SegmentModel]) -> None:
    api = api_factory(StaticSource(rfm_model_factory(make_model(at_ms=T0)), "3"))
    before = httpx.get(f"{api.url}/v1/segments", headers=api.headers).json()
    assert [seg["churn"] for seg in before["segments"]] == [None, None, None]
    s = stream
    s.at(T0)
    s.at(T0 + HOUR + 1)
    later = T0 + 20 * DAY
    s.at(later)
    s.detector.close()
    body = httpx.get(f"{api.url}/v1/segments", headers=api.headers).json()
    by_id = {seg["segment_id"]: seg["churn"] for seg in body["segments"]}
    mean = sum(_risk(redis_client, s.churn, u, later)[0] for u in ("s1", "s3")) / 2
    assert by_id[20]["users"] == 2 and by_id[20]["high_share"] == 1.0
    assert by_id[20]["mean_risk"] == pytest.approx(mean, rel=1e-12)
    assert by_id[20]["as_of"] == format_time(later)
    assert by_id[20]["churn_model_version"] == "5" and by_id[20]["horizon_days"] == 14
    one = httpx.get(f"{api.url}/v1/segments/20", headers=api.headers).json()
    assert one["churn"] == by_id[20]
    # measured under another segment model version: not shown
    other = api_factory(StaticSource(rfm_model_factory(make_model(at_ms=T0)), "4"))
    body = httpx.get(f"{other.url}/v1/segments", headers=other.headers).json()
    assert all(seg["churn"] is None for seg in body["segments"])
