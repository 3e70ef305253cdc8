"""Incremental updates: partial_fit on the ``features`` stream, candidates through gates.

:class:`Updater` holds the champion's centroids in a :class:`DecayingKMeans` (the
champion's preprocessor stays fixed between refits) and a window of the most
recent aggregate record per user. Each batch of messages is evaluated as of the
stream time (the newest event time read so far) and partial_fit; every
``update_publish_rows`` rows or ``update_publish_minutes`` it publishes a candidate:
normally the decayed centroids; when drift passes a threshold (max feature PSI
against the parent's baseline, or mean distance-to-centroid grown by
``drift_distance_ratio``) a full refit on the window instead. The window is evaluated
as of the stream time when a candidate is built, so a user whose records stopped
coming has aged in it like everyone else. Candidates go through the gates; a passing
one becomes the champion and the parent of the next.

``training/feed.py`` feeds it from the topic.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from segstream.adapters.registry import Registry
from segstream.config import Settings
from segstream.core.segment_model import SegmentModel
from segstream.training.baseline import feature_psi
from segstream.training.data import FeatureTable, table_from_aggregates
from segstream.training.fit import fit_model, model_from_centroids
from segstream.training.kmeans import DecayingKMeans
from segstream.training.pipeline import Published, next_segment_id, params_fingerprint, publish

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftState:
    psi_max: float
    psi_feature: str
    distance_ratio: float

    def triggered(self, settings: Settings) -> bool:
        return (self.psi_max > settings.drift_psi_threshold
                or self.distance_ratio > settings.drift_distance_ratio)


def drift_of(model: SegmentModel, X: np.ndarray) -> DriftState:
    psis = feature_psi(model.baseline, X)
    name = max(psis, key=lambda k: psis[k]) if psis else ""
    base = float((model.baseline.get("distance") or {}).get("mean", 0.0)) or 1.0
    ratio = float(model.assign(X).distances.mean()) / base if len(X) else 1.0
    return DriftState(psis.get(name, 0.0), name, ratio)


class Updater:
    """Decayed partial_fit from a parent model; publishes candidates to the registry.

    The parent must have been fitted on this process's feature params (refused
    otherwise: its centroids live in another feature space).
    """

    def __init__(self, settings: Settings, registry: Registry, parent: SegmentModel,
                 *, overrides: dict[int, dict[str, str]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.params = settings.feature_params()
        self.registry = registry
        self.overrides = overrides
        self.clock = clock
        self.window: OrderedDict[str, np.void] = OrderedDict()  # user -> newest record
        self.stream_ms = 0  # newest event time of any record read
        self.rows_seen = 0
        self.published: list[Published] = []
        self._reset(parent)

    def _reset(self, parent: SegmentModel) -> None:
        parent.check_spec()
        if params_fingerprint(parent) != self.params.fingerprint:
            fp = params_fingerprint(parent)
            raise ValueError(
                f"model {parent.version} was fitted on feature params "
                f"{'(not recorded)' if fp is None else f'{fp:08x}'}, this process uses "
                f"{self.params.fingerprint:08x} ({self.params.describe()}); train a new "
                "model with `segstream train` on features of these params")
        self.parent = parent
        weights = parent.info.get("cluster_weights") or [
            p.get("size", 1) for p in parent.profiles] or [1.0] * parent.k
        self.km = DecayingKMeans.from_centroids(
            parent.centroids, np.maximum(np.asarray(weights, dtype=float), 1.0),
            half_life=self.settings.update_half_life_rows, random_state=self.settings.random_seed)
        self.rows_since_publish = 0
        self.last_publish = self.clock()

    def window_table(self) -> FeatureTable:
        """The window's users evaluated as of the stream time."""
        users = np.array(list(self.window), dtype=object)
        aggs = np.array(list(self.window.values()), dtype=next(iter(self.window.values())).dtype)
        return table_from_aggregates(users, aggs, self.stream_ms, self.params,
                                     f"{self.settings.topic_features} (recent window)")

    def feed(self, table: FeatureTable) -> list[Published]:
        """partial_fit ``table`` (a snapshot with its records) in mini-batches; publish
        whenever a trigger fires."""
        if table.aggs is None or table.as_of_ms is None:
            raise ValueError(f"{table.source}: updates need the aggregate records (a snapshot "
                             "of the features topic or the history), not evaluated features")
        self.stream_ms = max(self.stream_ms, table.as_of_ms)
        out = []
        step = self.settings.update_batch_rows
        for lo in range(0, len(table), step):
            part = table.take(np.arange(lo, min(lo + step, len(table))))
            self.km.partial_fit(self.parent.preprocessor.transform(part.X))
            assert part.aggs is not None
            for uid, agg in zip(part.user_ids, part.aggs, strict=True):
                prev = self.window.get(uid)
                if prev is None or (int(agg["last_ms"]), int(agg["events"])) >= (
                        int(prev["last_ms"]), int(prev["events"])):
                    self.window[uid] = agg.copy()  # not a view: the batch can go
                self.window.move_to_end(uid)
            while len(self.window) > self.settings.update_window_rows:
                self.window.popitem(last=False)
            self.rows_seen += len(part)
            self.rows_since_publish += len(part)
            due = (self.rows_since_publish >= self.settings.update_publish_rows
                   or self.clock() - self.last_publish >= 60 * self.settings.update_publish_minutes)
            if due:
                out.append(self.publish())
        return out

    def publish(self) -> Published:
        """Register a candidate from what was learned since the last one."""
        table = self.window_table()
        drift = drift_of(self.parent, table.X)
        champion = self.parent
        current = self.registry.champion_version()
        if current is not None and current != self.parent.version:
            champion = self.registry.load(current)  # promoted by someone else meanwhile
        next_id = next_segment_id(self.registry)
        if drift.triggered(self.settings):
            kind = "refit"
            candidate = fit_model(table, self.parent.k, seed=self.settings.random_seed,
                                  parent=self.parent, next_id=next_id, kind=kind,
                                  overrides=self.overrides)
        else:
            kind = "incremental"
            candidate = model_from_centroids(table, self.parent, self.km.cluster_centers_,
                                             self.km.counts_, seed=self.settings.random_seed,
                                             next_id=next_id, overrides=self.overrides)
        candidate.info["drift"] = {"psi_max": drift.psi_max, "psi_feature": drift.psi_feature,
                                   "distance_ratio": drift.distance_ratio}
        candidate.info["rows_seen"] = self.rows_seen
        result = publish(self.registry, candidate, table.X, self.settings, champion=champion,
                         kind=kind, extra_tags={"drift_psi_max": f"{drift.psi_max:.4f}",
                                                "drift_distance_ratio":
                                                    f"{drift.distance_ratio:.4f}"})
        log.info("published version %s (%s): %s", result.version, kind, result.gate.summary())
        self.published.append(result)
        if result.promoted:
            self._reset(candidate)
        else:
            self.rows_since_publish = 0
            self.last_publish = self.clock()
        return result
