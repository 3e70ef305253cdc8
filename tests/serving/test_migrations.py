"""GET /v1/segments/migrations: the from -> to matrices of segment and RFM-group changes
in a window add up to the changes the detector published in it (read back from the
`segment-changes` topic), also when a crash made it publish a change twice; on the real
broker and Redis."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from segstream.adapters.topic_reader import read_topic
from segstream.config import Settings
from segstream.core.segment_model import SegmentModel
from segstream.core.times import format_time
from segstream.serving import metrics
from segstream.serving.changes import ChangeDetector
from segstream.serving.model_holder import ModelHolder
from segstream.serving.model_source import StaticSource
from segstream.serving.records import parse_as_of
from tests.support.api import Api
from tests.support.archetypes import DAY, HOUR, PARAMS, users_state, write_records
from tests.support.models import lapsing_model, make_model
from tests.support.webhooks import T0, produce_records

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
USERS = {f"u{i}": i % 3 for i in range(12)}  # four of each archetype; u1, u4, ... buy


def _expected(published: list[dict[str, Any]], since: str, until: str) -> dict[str, Any]:
    """The matrices of the published changes with ``since <= ts_ms < until``."""
    start, end = parse_as_of(since, "since"), parse_as_of(until, "until")
    assert start is not None and end is not None
    inside = [c for c in published if start <= c["ts_ms"] < end]
    segs = Counter((c["from_segment"], c["to_segment"]) for c in inside
                   if "segment" in c["changed"])
    groups = Counter((c["from_rfm_group"], c["to_rfm_group"]) for c in inside
                     if "rfm_group" in c["changed"])
    return {"changes": len(inside), "segment_changes": sum(segs.values()),
            "rfm_group_changes": sum(groups.values()), "segments": segs, "rfm_groups": groups}


def _got(body: dict[str, Any]) -> dict[str, Any]:
    return {"changes": body["changes"], "segment_changes": body["segment_changes"],
            "rfm_group_changes": body["rfm_group_changes"],
            "segments": Counter({(c["from_segment"], c["to_segment"]): c["count"]
                                 for c in body["segments"]}),
            "rfm_groups": Counter({(c["from_group"], c["to_group"]): c["count"]
                                   for c in body["rfm_groups"]})}


def _migrations(api: Api, since: int | str, until: int | str | None = None) -> httpx.Response:
    params = {"since": since if isinstance(since, str) else format_time(since)}
    if until is not None:
        params["until"] = until if isinstance(until, str) else format_time(until)
    return httpx.get(f"{api.url}/v1/segments/migrations", params=params, headers=api.headers)


@pytest.fixture
def detector_factory(settings_factory: Callable[..., Settings],
                     topic_factory: Callable[..., str], kafka_bootstrap: str,
                     redis_client: Any) -> Callable[..., tuple[ChangeDetector, Settings]]:
    topics = {"topic_features": topic_factory("features", partitions=1),
              "topic_segment_changes": topic_factory("changes", partitions=1)}

    def make(model: SegmentModel) -> tuple[ChangeDetector, Settings]:
        settings = settings_factory(**topics, clock="event", rescore_interval_s=3600,
                                    segment_min_dwell_s=0)
        holder = ModelHolder(StaticSource(model, "1"), PARAMS)
        return ChangeDetector(settings, holder, redis_client, kafka_bootstrap), settings

    return make


def test_the_matrices_add_up_to_the_changes_published_in_each_window(
    detector_factory: Callable[..., tuple[ChangeDetector, Settings]],
    rfm_model_factory: Callable[..., SegmentModel], api_factory: Callable[..., Api],
    kafka_bootstrap: str, redis_client: Any,
) -> None:
    model = rfm_model_factory(lapsing_model(at_ms=T0))
    detector, settings = detector_factory(model)
    write_records(redis_client, users_state(USERS, T0, seed=1))  # all last active at T0
    before = {k: metrics.MIGRATIONS.labels(*k)._value.get() for k in (
        ("segment", "10", "40"), ("segment", "20", "40"), ("segment", "40", "20"),
        ("rfm_group", "Champions", "Loyal"), ("rfm_group", "Loyal", "Can't Lose Them"))}

    def run_to(t: int, *records: tuple[str, Any]) -> int:
        """Another user's event (and ``records``) move the stream time to ``t``."""
        produce_records(kafka_bootstrap, settings.topic_features,
                        [*records, ("tick", users_state({"tick": 0}, t).aggs[0])])
        return detector.run_available_now(timeout_s=60)

    run_to(T0)
    assert run_to(T0 + HOUR + 1) == 0  # first segments and groups recorded
    assert run_to(T0 + 5 * DAY) == 12  # time alone: all to Lapsed, buyers Champions->Loyal
    back = users_state({"u0": 1}, T0 + 6 * DAY, seed=2)  # u0 comes back and buys
    write_records(redis_client, back)
    assert run_to(T0 + 6 * DAY, ("u0", back.aggs[0])) == 1  # 40 -> 20, Prospect -> Champions
    assert run_to(T0 + 40 * DAY) == 5  # the buyers' purchases age: -> Can't Lose Them
    detector.close()
    published = [orjson.loads(r.value) for r in read_topic(
        kafka_bootstrap, settings.topic_segment_changes) if r.value]
    assert len(published) == 18 and len({c["change_id"] for c in published}) == 18
    assert {c["trigger"] for c in published} == {"time", "event"}
    assert any(c["changed"] == ["rfm_group"] for c in published)
    assert any(c["changed"] == ["segment", "rfm_group"] for c in published)

    api = api_factory(StaticSource(model, "1"))
    windows = [  # (since, until): one hour, the first week, around day 40, odd minutes
        (T0 + 5 * DAY, T0 + 5 * DAY + 1), (T0, T0 + 7 * DAY),
        (T0 + 39 * DAY, T0 + 41 * DAY), (T0 + 6 * DAY - 7 * 60_000, T0 + 6 * DAY + 1)]
    for since, until in windows:
        r = _migrations(api, since, until)
        assert r.status_code == 200, r.text
        body = r.json()
        # whole hours: since rounded down, until up; the counts are of that window
        assert parse_as_of(body["since"], "since") == since - since % HOUR
        assert parse_as_of(body["until"], "until") == until - until % HOUR + HOUR
        assert body["bucket_s"] == 3600
        want = _expected(published, body["since"], body["until"])
        assert _got(body) == want, (format_time(since), format_time(until))
        assert want["changes"] > 0
    # the first week and the days around day 40 hold every change, each once
    assert sum(_migrations(api, since, until).json()["changes"] for since, until in
               windows[1:3]) == len(published)
    cells = _migrations(api, T0, T0 + 7 * DAY).json()
    assert cells["segments"][0] == {"from_segment": 10, "to_segment": 40, "count": 4}
    assert cells["segments"] == sorted(cells["segments"], key=lambda c: -c["count"])
    # the detector's counter counts the same
    for (kind, a, b), n in before.items():
        old, new = (("from_segment", "to_segment") if kind == "segment" else
                    ("from_rfm_group", "to_rfm_group"))
        want_n = sum(1 for c in published if kind in c["changed"]
                     and (str(c[old]), str(c[new])) == (a, b))
        assert metrics.MIGRATIONS.labels(kind, a, b)._value.get() - n == want_n > 0, (a, b)


def test_a_change_published_twice_after_a_crash_is_counted_once(
    detector_factory: Callable[..., tuple[ChangeDetector, Settings]],
    rfm_model_factory: Callable[..., SegmentModel], api_factory: Callable[..., Api],
    kafka_bootstrap: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The detector flushes a batch's changes, then dies before its state commits: the
    restarted one decides them again and publishes them again (same ids). The counts
    are of the committed changes: each once."""
    model = rfm_model_factory(make_model(at_ms=T0))
    a, settings = detector_factory(model)
    users = ["p0", "p1", "p2"]
    produce_records(kafka_bootstrap, settings.topic_features,
                    [(u, users_state({u: 0}, T0 + i).aggs[0]) for i, u in enumerate(users)])
    assert a.run_available_now(timeout_s=60) == 0  # first segments recorded
    t = T0 + HOUR
    produce_records(kafka_bootstrap, settings.topic_features,  # now big spenders
                    [(u, users_state({u: 1}, t + i).aggs[0]) for i, u in enumerate(users)])

    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("killed after the flush, before the commit")

    monkeypatch.setattr(a, "_commit", crash)
    with pytest.raises(RuntimeError, match="killed"):
        a.run_available_now(timeout_s=60)
    a.close()
    b, _ = detector_factory(model)
    assert b.run_available_now(timeout_s=60) == 3
    b.close()
    published = [orjson.loads(r.value) for r in read_topic(
        kafka_bootstrap, settings.topic_segment_changes) if r.value]
    ids = Counter(c["change_id"] for c in published)
    assert len(ids) == 3 and set(ids.values()) == {2}  # each published twice
    assert all(c["changed"] == ["segment", "rfm_group"] for c in published)

    api = api_factory(StaticSource(model, "1"))
    body = _migrations(api, T0, T0 + 2 * HOUR).json()
    assert body["changes"] == 3 and body["segment_changes"] == body["rfm_group_changes"] == 3
    assert body["segments"] == [{"from_segment": 10, "to_segment": 20, "count": 3}]
    assert body["rfm_groups"] == [{"from_group": "Prospect", "to_group": "Champions",
                                   "count": 3}]


def test_the_window_is_bounded_and_named_in_every_refusal(api_factory: Callable[..., Api]
                                                          ) -> None:
    api = api_factory()
    cases = [
        ({}, "query.since"),
        ({"since": "soon"}, "query.since"),
        ({"since": "2026-12-01T00:00:00Z", "until": "later"}, "query.until"),
        ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "query.until"),
        ({"since": "2026-12-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "query.until"),
        ({"since": "2026-11-01T00:00:00Z", "until": "2026-12-02T00:00:01Z"}, "query.until"),
    ]
    for params, field in cases:
        r = httpx.get(f"{api.url}/v1/segments/migrations", params=params,
                      headers=api.headers)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["field"] == field, params
    # 31 days exactly is the most; nothing was published: zero, no cells
    r = _migrations(api, "2026-11-01T00:00:00Z", "2026-12-02T00:00:00Z")
    assert r.status_code == 200, r.text
    assert r.json() == {"since": "2026-11-01T00:00:00.000+00:00",
                        "until": "2026-12-02T00:00:00.000+00:00", "bucket_s": 3600,
                        "changes": 0, "segment_changes": 0, "rfm_group_changes": 0,
                        "segments": [], "rfm_groups": []}
    assert "31 days" in _migrations(api, "2026-11-01", "2026-12-03").json()["error"]["message"]
