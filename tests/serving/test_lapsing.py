"""A user who stops coming changes segment with no new event, and the CMS hears of it.

The log: users active every day for 50 days before the detector starts; then some
stay active for 60 more days, others stop after day 10. The champion is fitted by
training's own ``fit_model`` on that log's features as of several times (so a
"lapsed" segment exists) and registered in the real MLflow registry. The stream is
simulated day by day with the streaming step (records to Redis and to the `features`
topic, as the job's sinks write them); the detector (clock = stream time) runs bounded
after every few days. The silent users
get a segment change from the sweep, and the webhook reaches a local receiver that
checks the HMAC itself.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from segstream.adapters.kafka import Producer
from segstream.adapters.online_store import HEADER_UPDATED, encode_record
from segstream.adapters.redis_keys import feature_key
from segstream.adapters.topic_reader import RedisOffsetReader, read_topic
from segstream.config import Settings
from segstream.core.aggregates import decode, encode, evaluate
from segstream.serving.changes import ChangeDetector
from segstream.serving.model_holder import ModelHolder
from segstream.serving.model_source import RegistrySource
from segstream.serving.webhooks import Dispatcher
from segstream.sources.stack import free_port
from segstream.streaming.step import EVENT_COLUMNS, GroupState, advance, log_aggregates
from tests.support.api import Api
from tests.support.archetypes import DAY, HOUR, MINUTE, PARAMS, WATERMARK_MS
from tests.support.webhooks import WEBHOOK_SECRET, Receiver

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.mlflow, pytest.mark.slow]
T0 = 1_767_225_600_000  # 2026-01-01
HISTORY, DAYS, SILENT_AFTER = 50, 60, 10  # days before day 0, after it; silent after
ACTIVE = [f"active-{i}" for i in range(12)]
SILENT = [f"silent-{i}" for i in range(6)]


def the_log() -> pd.DataFrame:
    """Valid records in arrival order: a session a day per user while they are active."""
    rng = np.random.default_rng(9)
    rows: list[dict[str, Any]] = []
    for day in range(-HISTORY, DAYS + 1):
        for user in ACTIVE + SILENT:
            if user in SILENT and day > SILENT_AFTER:
                continue
            start = T0 + day * DAY + int(rng.integers(9, 20)) * HOUR
            kinds = ["page_view", "content_view", "content_view"]
            if rng.random() < 0.3:
                kinds += ["add_to_cart", "purchase"]
            for j, kind in enumerate(kinds):
                rows.append({"user_id": user, "event_id": f"{user}-{day}-{j}",
                             "ts": start + j * MINUTE, "event_type": kind,
                             "session_id": None, "content_id": f"c{rng.integers(0, 30)}",
                             "category": "shoes", "dwell_ms": float(rng.uniform(5e3, 6e4)),
                             "amount": 40.0 if kind == "purchase" else None,
                             "platform": "ios"})
    frame = pd.DataFrame(rows).reindex(columns=list(EVENT_COLUMNS))
    frame["partition"], frame["offset"] = 0, np.arange(len(frame))
    return frame


def fit_champion(log: pd.DataFrame, settings: Settings) -> tuple[str, Any]:
    """training's fit on every user as of days 10, 20, 40 and 60; registered as champion."""
    from segstream.adapters.registry import Registry
    from segstream.training.data import table_from_aggregates
    from segstream.training.fit import fit_model

    tables = []
    for day in (SILENT_AFTER, 20, 40, DAYS):
        T = T0 + day * DAY + 23 * HOUR
        state = log_aggregates(log, watermark_ms=WATERMARK_MS, params=PARAMS, as_of_ms=T)
        tables.append(table_from_aggregates([f"{u}@{day}" for u in state.users], state.aggs,
                                            T, PARAMS, source=f"the log as of day {day}"))
    table = dataclasses.replace(
        tables[0], user_ids=np.concatenate([t.user_ids for t in tables]),
        X=np.vstack([t.X for t in tables]),
        last_event_ms=np.concatenate([t.last_event_ms for t in tables]), aggs=None,
        as_of_ms=None, source="the log as of days 10, 20, 40, 60")
    model = fit_model(table, 2, seed=0)
    assert model.info["feature_params"]["fingerprint"] == PARAMS.fingerprint
    registry = Registry(settings)
    version = registry.register(model)
    registry.set_alias(version, "champion")
    return str(version), model


def test_a_user_who_stops_coming_changes_segment_and_the_webhook_is_delivered(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    kafka_bootstrap: str, redis_client: Any, receivers: list[Receiver],
    api_factory: Callable[..., Api],
) -> None:
    features, changes = topic_factory("features"), topic_factory("changes")
    port = free_port()
    receivers.append(Receiver(port))
    overrides: dict[str, Any] = dict(
        topic_features=features, topic_segment_changes=changes, clock="event",
        rescore_interval_s=5 * 86_400, segment_min_dwell_s=86_400,
        webhook_urls=[f"http://127.0.0.1:{port}/hook"], webhook_secret=WEBHOOK_SECRET)
    settings = settings_factory(**overrides)
    log = the_log()
    version, model = fit_champion(log, settings)
    # the precondition: time alone moves a silent user into another segment
    early = log_aggregates(log, watermark_ms=WATERMARK_MS, params=PARAMS,
                           as_of_ms=T0 + (SILENT_AFTER + 1) * DAY)
    silent_rows = [list(early.users).index(u) for u in SILENT]
    before = model.assign(evaluate(early.aggs[silent_rows], T0 + SILENT_AFTER * DAY + 23 * HOUR,
                                   PARAMS)).segment_ids
    after = model.assign(evaluate(early.aggs[silent_rows], T0 + DAYS * DAY, PARAMS)).segment_ids
    lapsed = int(after[0])
    assert set(after.tolist()) == {lapsed} and lapsed not in before.tolist(), (before, after)

    # the stream: the history up to day 0 in one micro-batch (the job ran before the
    # detector started), then a day per micro-batch; the detector runs bounded every 5 days
    holder = ModelHolder(RegistrySource(settings), settings.feature_params())
    detector = ChangeDetector(settings, holder, redis_client, kafka_bootstrap)
    producer = Producer(kafka_bootstrap)
    state = GroupState.empty()
    day_of = np.maximum((log["ts"].to_numpy() - T0) // DAY, -1)
    for day in range(-1, DAYS + 1):
        step = advance(state, log[day_of == day], watermark_ms=WATERMARK_MS, params=PARAMS)
        written = int(state.aggs["last_ms"].max())
        pipe = redis_client.pipeline(transaction=False)
        for user, agg in zip(map(str, step.users), step.aggs, strict=True):
            pipe.hset(feature_key(user), mapping=encode_record(agg, PARAMS,
                                                               updated_ms=written))
            producer.send(features, encode(agg, PARAMS)[0], key=user.encode(),
                          headers={HEADER_UPDATED: str(written).encode()})
        pipe.execute()
        producer.flush()
        if day % 5 == 4 or day == DAYS:
            start = time.monotonic()
            detector.run_available_now(timeout_s=120)  # ends: bounded by the topic's end
            assert time.monotonic() - start < 120
    detector.close()
    del producer

    published = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, changes)]
    to_lapsed = {c["user_id"]: c for c in published if c["to_segment"] == lapsed}
    assert set(to_lapsed) == set(SILENT), published  # every silent user, no active one
    last_event = {u: int(early.aggs["last_ms"][i]) for u, i in zip(SILENT, silent_rows,
                                                                   strict=True)}
    for user, change in to_lapsed.items():
        assert change["trigger"] == "time" and change["model_version"] == version
        assert change["ts_ms"] > last_event[user] + 5 * DAY  # moved by time, long after
    # no message of a silent user after its last event: the change came without one
    messages = [r for r in read_topic(kafka_bootstrap, features) if r.key == b"silent-0"]
    newest = decode([r.value for r in messages if r.value], PARAMS)["last_ms"].max()
    assert len(messages) == SILENT_AFTER + 2 and newest == last_event["silent-0"]

    # the webhook dispatcher delivers it, signed
    dispatcher = Dispatcher(settings, redis_client)
    reader = RedisOffsetReader(kafka_bootstrap, changes, redis_client, "webhooks-lapsing")
    delivered, deadline = 0, time.monotonic() + 60
    while delivered < len(published):
        assert time.monotonic() < deadline
        delivered += dispatcher.run_once(reader, 300)
    reader.close()
    dispatcher.close()
    got = {c["change_id"]: c for c in receivers[0].received}
    assert to_lapsed["silent-0"]["change_id"] in got
    assert got[to_lapsed["silent-0"]["change_id"]]["to_segment"] == lapsed
    assert receivers[0].bad_signatures == 0

    # the demo's view of it, through the API: features at the last event and at the change
    from rich.console import Console

    from segstream.app.demo_serving import show_lapsed

    api = api_factory(RegistrySource(settings), api_auth_enabled=False, **overrides)
    console = Console(record=True, width=200)
    shown = show_lapsed(settings, console, api.url)
    assert shown is not None and shown["user_id"] in SILENT
    text = console.export_text()
    assert f"{shown['user_id']}: segment {shown['from_segment']} -> {lapsed}" in text
    assert "with no new event" in text and "recency_days" in text
