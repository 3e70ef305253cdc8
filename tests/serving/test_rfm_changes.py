"""An RFM-group change is a change event like a segment change (hysteresis, stable id,
the previous and new values, signed webhook), and the sweep's gauge counts the users
per group; on the real broker and Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from segstream.adapters.topic_reader import RedisOffsetReader
from segstream.config import Settings
from segstream.core import rfm
from segstream.core.segment_model import SegmentModel
from segstream.serving import metrics
from segstream.serving.webhooks import Dispatcher
from segstream.sources.stack import free_port
from tests.support.archetypes import DAY, HOUR, users_state, write_records
from tests.support.change_stream import ChangeStream
from tests.support.models import lapsing_model, make_model
from tests.support.webhooks import T0, WEBHOOK_SECRET, Receiver, drain

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
USERS = {"b0": 0, "s1": 1, "o2": 2, "s3": 1}  # two big spenders (buy), two who never do


@pytest.fixture
def stream_factory(settings_factory: Callable[..., Settings],
                   topic_factory: Callable[..., str], kafka_bootstrap: str,
                   redis_client: Any) -> Callable[..., ChangeStream]:
    def make(model: SegmentModel, **overrides: Any) -> ChangeStream:
        settings = settings_factory(
            topic_features=topic_factory("features", partitions=1),
            topic_segment_changes=topic_factory("changes", partitions=1), clock="event",
            rescore_interval_s=3600, **overrides)
        write_records(redis_client, users_state(USERS, T0, seed=1))  # last active at T0
        return ChangeStream(settings, model, redis_client, kafka_bootstrap)

    return make


def _state(redis_client: Any, user: str) -> dict[str, Any]:
    raw = redis_client.get(f"seg:segment:{user}")
    assert raw is not None
    out: dict[str, Any] = orjson.loads(raw)
    return out


def test_a_group_change_alone_is_an_event_with_the_previous_group_and_its_time(
    stream_factory: Callable[..., ChangeStream], rfm_model_factory: Callable[..., SegmentModel],
    redis_client: Any, receivers: list[Receiver],
) -> None:
    """The big spenders stay in segment 20 as time passes, but their purchases age: R 5
    (Champions) -> R 4 (Loyal) two days on, held back by a 3-day dwell, published on the
    sweep five days on."""
    port = free_port()
    receivers.append(Receiver(port))
    s = stream_factory(rfm_model_factory(make_model(at_ms=T0)), segment_min_dwell_s=3 * 86_400,
                       webhook_urls=[f"http://127.0.0.1:{port}/hook"],
                       webhook_secret=WEBHOOK_SECRET)
    assert s.at(T0) == 0  # the clock starts
    first = T0 + HOUR + 1
    assert s.at(first) == 0  # the first sweep records segments and groups
    assert _state(redis_client, "s1") == {"sid": 20, "since": first, "rfm": "Champions",
                                          "rfm_since": first}
    assert _state(redis_client, "b0")["rfm"] == "Prospect"
    held = metrics.SEGMENT_CHANGES_SUPPRESSED._value.get()
    assert s.at(T0 + 2 * DAY) == 0  # Loyal now, but Champions for under 3 days: held
    assert metrics.SEGMENT_CHANGES_SUPPRESSED._value.get() == held + 2  # s1 and s3
    assert _state(redis_client, "s1")["rfm"] == "Champions"
    later = T0 + 5 * DAY
    changes = s.at(later)
    published = s.published()
    assert changes == len(published)
    # the group moved; the Prospects' did not (a night owl may change segment by now)
    got = {c["user_id"]: c for c in published if "rfm_group" in c["changed"]}
    assert set(got) == {"s1", "s3"}
    assert all(c["changed"] == ["segment"] for c in published if c["user_id"] not in got)
    assert got["s1"] == {
        "change_id": f"s1:rfm:Champions:{first}:Loyal", "user_id": "s1",
        "changed": ["rfm_group"], "from_segment": 20, "to_segment": 20,
        "persona": "Big spenders", "from_rfm_group": "Champions", "to_rfm_group": "Loyal",
        "rfm": {"r": 3, "f": 5, "m": 5, "group": "Loyal"}, "model_version": "3",
        "at": got["s1"]["at"], "ts_ms": later, "trigger": "time"}
    assert got["s1"]["at"].startswith("2026-06-02T")  # T0 + 5 days, ISO
    assert _state(redis_client, "s1") == {"sid": 20, "since": first, "rfm": "Loyal",
                                          "rfm_since": later}
    # the users per group, as the sweep evaluated them
    users = {g: metrics.RFM_GROUP_USERS.labels(g)._value.get() for g in rfm.GROUPS}
    assert users == {g: {"Loyal": 2, "Prospect": 2}.get(g, 0) for g in rfm.GROUPS}
    text = metrics.render()[0].decode()
    assert 'segstream_rfm_group_users{group="Loyal"} 2.0' in text
    assert '"s1"' not in text and '"s3"' not in text  # groups only, never a user id
    assert s.at(later + HOUR) == 0  # nothing new: no event
    s.detector.close()

    # delivered signed, as published (the new fields too)
    dispatcher = Dispatcher(s.settings, redis_client)
    reader = RedisOffsetReader(s.bootstrap, s.settings.topic_segment_changes, redis_client,
                               "webhooks-rfm")
    drain(dispatcher, reader, changes)
    reader.close()
    dispatcher.close()
    assert sorted(receivers[0].received, key=lambda c: c["user_id"]) == sorted(
        published, key=lambda c: c["user_id"])
    assert receivers[0].bad_signatures == 0


def test_a_segment_and_group_change_together_is_one_event_saying_both(
    stream_factory: Callable[..., ChangeStream], rfm_model_factory: Callable[..., SegmentModel],
    redis_client: Any,
) -> None:
    """Five silent days move the big spenders to the fourth segment, Lapsed, and their
    group to Loyal: one event; the Prospects change segment alone."""
    s = stream_factory(rfm_model_factory(lapsing_model(at_ms=T0)), segment_min_dwell_s=0)
    s.at(T0)
    first = T0 + HOUR + 1
    s.at(first)
    redis_client.set("seg:segment:o2", orjson.dumps({"sid": 30, "since": T0}))  # no rfm
    later = T0 + 5 * DAY
    assert s.at(later) == 4
    got = {c["user_id"]: c for c in s.published()}
    both = got["s1"]
    assert both["changed"] == ["segment", "rfm_group"]
    assert (both["from_segment"], both["to_segment"], both["persona"]) == (20, 40, "Lapsed")
    assert (both["from_rfm_group"], both["to_rfm_group"]) == ("Champions", "Loyal")
    assert both["change_id"] == f"s1:20:{first}:40:+rfm:Champions:{first}:Loyal"
    alone = got["b0"]
    assert alone["changed"] == ["segment"] and alone["change_id"] == f"b0:10:{first}:40"
    assert (alone["from_rfm_group"], alone["to_rfm_group"]) == ("Prospect", "Prospect")
    assert alone["rfm"] == {"r": None, "f": None, "m": None, "group": "Prospect"}
    # a state written before groups were kept gets its group recorded, not published
    upgraded = got["o2"]
    assert upgraded["change_id"] == f"o2:30:{T0}:40" and upgraded["changed"] == ["segment"]
    assert _state(redis_client, "o2") == {"sid": 40, "since": later, "rfm": "Prospect",
                                          "rfm_since": later}
    s.detector.close()
