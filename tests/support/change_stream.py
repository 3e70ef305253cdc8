"""A change detector on the event clock, driven the way the stream drives it: a tick (a
record of another user) moves the stream time, and every run is bounded by the topic's
end. The change-event tests (segments, RFM groups, churn bands) share it."""

from __future__ import annotations

from typing import Any

import orjson

from segstream.adapters.topic_reader import read_topic
from segstream.config import Settings
from segstream.core.churn_model import ChurnModel
from segstream.core.segment_model import SegmentModel
from segstream.serving.changes import ChangeDetector
from segstream.serving.churn import ChurnHolder, StaticChurnSource
from segstream.serving.model_holder import ModelHolder
from segstream.serving.model_source import StaticSource
from tests.support.archetypes import PARAMS, users_state
from tests.support.webhooks import produce_records


class ChangeStream:
    """Segment model version "3"; with ``churn``, churn model version "5"."""

    def __init__(self, settings: Settings, model: SegmentModel, redis: Any, bootstrap: str,
                 churn: ChurnModel | None = None) -> None:
        self.settings, self.bootstrap, self.churn = settings, bootstrap, churn
        self.detector = ChangeDetector(
            settings, ModelHolder(StaticSource(model, "3"), PARAMS), redis, bootstrap,
            None if churn is None else ChurnHolder(StaticChurnSource(churn, "5"), PARAMS))

    def at(self, t: int) -> int:
        """Move the stream time to ``t``, run; the changes published."""
        produce_records(self.bootstrap, self.settings.topic_features,
                        [("tick", users_state({"tick": 0}, t).aggs[0])])
        return self.detector.run_available_now(timeout_s=60)

    def published(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in read_topic(
            self.bootstrap, self.settings.topic_segment_changes) if r.value]
