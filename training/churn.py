"""Churn risk end to end: history -> labelled snapshots -> fit -> evaluate beside the
baselines and the champion -> gate -> registry (``segstream churn train|evaluate``).

The modules: ``churn_data.py`` (snapshots, labels, the time split), ``churn_fit.py``
(HGB + calibration -> the numpy artefact), ``churn_eval.py`` (measures, baselines,
gates). The registered version is the model that was measured: fitted on the training
times only, so its metrics are what it scored on the later, held-out times.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segstream.adapters.registry import ChurnRegistry, GateResult, Registry, RegistryError
from segstream.config import Settings
from segstream.core.churn_model import ChurnModel
from segstream.core.contract import FEATURE_SPEC
from segstream.training import churn_data, churn_eval
from segstream.training.churn_data import ChurnExamples
from segstream.training.churn_fit import fit_churn

log = logging.getLogger(__name__)


@dataclass
class ChurnResult:
    model: ChurnModel
    train: ChurnExamples
    test: ChurnExamples
    evaluation: churn_eval.Evaluation
    gate: GateResult
    version: str | None = None
    promoted: bool = False
    champion: str | None = None  # the champion compared with (version), if any
    champion_note: str = ""  # why no champion was compared
    segments: list[dict[str, Any]] = field(default_factory=list)
    segment_model: str | None = None  # the segment version of ``segments``


def split(settings: Settings, path: Path, end_ms: int | None = None
          ) -> tuple[ChurnExamples, ChurnExamples]:
    """The training and test rows of a history by the settings (``end_ms``: use the
    history only up to this time, as if it ended there)."""
    return churn_data.train_test(path, settings.feature_params(), settings.churn_label,
                                 settings.churn_horizon_days,
                                 settings.churn_snapshot_every_days,
                                 settings.churn_test_snapshots, end_ms=end_ms)


def champion_or_none(registry: ChurnRegistry) -> ChurnModel | None:
    if registry.champion_version() is None:
        return None
    return registry.load("champion")


def segments_of(settings: Settings, rows: ChurnExamples, model: ChurnModel
                ) -> tuple[str | None, list[dict[str, Any]]]:
    """Per segment of the segment champion (same spec and feature params): rows, mean
    risk, observed churn rate; ``(None, [])`` without such a champion."""
    try:
        segments = Registry(settings).load("champion")
    except RegistryError:
        return None, []
    fp = (segments.info.get("feature_params") or {}).get("fingerprint")
    if segments.spec_version != FEATURE_SPEC.version or fp != model.fingerprint:
        return None, []
    return segments.version, churn_eval.segment_risk(segments, rows, model.risk(rows.X))


def train_churn(settings: Settings, path: Path, *, promote: bool = True,
                end_ms: int | None = None) -> ChurnResult:
    """Fit on the training times, measure on the test times, gate, register, promote."""
    train, test = split(settings, path, end_ms)
    model = fit_churn(train, calibration=settings.churn_calibration,
                      band_edges=settings.churn_band_edges, seed=settings.random_seed)
    ev = churn_eval.evaluate(model, test, train.churn_rate)
    model.metrics = {k: v for k, v in ev.metrics.items() if k != "rows"}
    model.info |= ev.as_info() | {"test_rows": len(test), "source": str(path)}
    registry = ChurnRegistry(settings)
    champion = champion_or_none(registry)
    compared, note = None, ""
    if champion is not None:
        why = churn_eval.comparable(champion, model)
        if why is None:
            compared = {"version": champion.version,
                        "roc_auc": churn_eval.ranking(test.y, champion.risk(test.X))["roc_auc"]}
        else:
            note = f"champion {champion.version} has other {why}: not compared"
    gate = churn_eval.gate(ev, settings.churn_gate_margin, compared)
    seg_version, segments = segments_of(settings, test, model)
    if segments:
        model.info["segments"] = {"segment_model_version": seg_version, "rows": segments}
    version = registry.register(model, gate=gate)
    promoted = False
    if promote and gate.passed:
        registry.promote(version)
        promoted = True
    log.info("churn version %s: %s", version, gate.summary())
    return ChurnResult(model, train, test, ev, gate, version, promoted,
                       None if compared is None else str(compared["version"]), note,
                       segments, seg_version)


def evaluate_churn(settings: Settings, path: Path, ref: str = "champion",
                   as_of_ms: int | None = None) -> tuple[ChurnModel, ChurnExamples,
                                                         churn_eval.Evaluation]:
    """A registered churn model on one labelled snapshot of a history (default: the
    newest time whose label window the history covers), beside the baselines."""
    from segstream.adapters import history

    model = ChurnRegistry(settings).load(ref)
    params = settings.feature_params()
    model.check(params.fingerprint)
    label, horizon = str(model.label["label"]), float(model.label["horizon_days"])
    stream_ms = history.time_span(path)[1]
    if as_of_ms is None:
        as_of_ms = churn_data.newest_labelled_time(stream_ms, horizon)
    rows = churn_data.labelled_snapshot(path, params, as_of_ms, label, horizon, stream_ms)
    base_rate = float(model.info.get("train_churn_rate", rows.churn_rate))
    return model, rows, churn_eval.evaluate(model, rows, base_rate)
