"""Serving fixtures: the API run by a real uvicorn server on a free loopback port, on
the test Redis. The users (records folded from real events of three archetypes), the
model of those archetypes and the API's runner are in tests/support/ (archetypes.py,
models.py, api.py); the webhook receivers' fixture is in tests/conftest.py. That model
with RFM edges and training's profiles: ``rfm_model_factory``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from segstream.config import Settings
from segstream.core.segment_model import SegmentModel
from segstream.serving.churn import ChurnSource
from segstream.serving.model_source import ModelSource, StaticSource
from tests.support.api import API_KEY, Api, run_api
from tests.support.archetypes import archetype_sample
from tests.support.models import make_model


@pytest.fixture
def api_factory(settings_factory: Callable[..., Settings], redis_client: Any
                ) -> Iterator[Callable[..., Api]]:
    """``api_factory(source=None, churn=None, **settings)``: a running API on the test
    Redis (``churn``: its churn model source; none by default)."""
    stack = contextlib.ExitStack()

    def make(source: ModelSource | None = None, churn: ChurnSource | None = None,
             **overrides: Any) -> Api:
        base: dict[str, Any] = {"api_keys": [API_KEY], "api_model_poll_s": 0.2}
        base.update(overrides)
        settings = settings_factory(**base)
        src = source if source is not None else StaticSource(make_model(), "1")
        url = stack.enter_context(run_api(settings, src, churn))
        return Api(url, settings, src, {"X-API-Key": API_KEY})

    with stack:
        yield make


#: RFM quintile edges set by hand for the archetypes (tests/support/archetypes.py): a
#: big spender's last purchase is 1.4 to 2.5 days before its last event (by the time of
#: day), with 7 orders and 5,300 to 5,900 spent: R 5, F 5, M 5 (Champions); two days
#: later R 4, five days later R 3 (Loyal); 30 days later R 1 (Can't Lose Them). The
#: other two archetypes never buy: Prospect.
RFM_EDGES = {"purchase_recency_days": [3.0, 5.0, 10.0, 30.0],
             "lifetime_orders": [1.0, 2.0, 4.0, 6.0],
             "lifetime_spend": [100.0, 500.0, 1000.0, 3000.0]}


@pytest.fixture(scope="session")
def rfm_model_factory() -> Callable[..., SegmentModel]:
    """``rfm_model_factory(base=None, profiles=False)``: ``base`` (default
    ``make_model()``) with :data:`RFM_EDGES`; ``profiles=True``: with the profiles
    training builds (``build_profiles`` and ``name_segments``) of the archetype sample
    the model's centroids come from (the personas stay the base's)."""

    def make(base: SegmentModel | None = None, profiles: bool = False) -> SegmentModel:
        model = dataclasses.replace(base or make_model(), rfm_edges=RFM_EDGES)
        if profiles:
            from segstream.training.naming import name_segments
            from segstream.training.profiles import build_profiles

            X, labels = archetype_sample()
            built = build_profiles(X, model.preprocessor.transform(X), labels,
                                   model.centroids, model.segment_ids,
                                   [g for *_, g in model.rfm(X)])
            name_segments(built, X)
            model = dataclasses.replace(model, profiles=built)
        return model

    return make
