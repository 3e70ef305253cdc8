"""The demo's drift step (training/demo.py) on a real Parquet history: behaviour that
drifts half a day after training is detected two and a half days later, by the checks
`segstream update` runs; the same population without the drift is not flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segstream.app.demo_training import detected, drift_over_time
from segstream.config import Settings
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.step import log_aggregates, valid_frame
from segstream.training.data import table_from_aggregates
from segstream.training.fit import fit_model
from tests.support.real_logs import PARAMS, WATERMARK_MS, write_history

DAY_MS = 86_400_000


def _scan(tmp: Path, drift_at: float | None) -> tuple[list[int], int | None]:
    """Days (after the log's start) of the scan points and of the first detection."""
    log = generate(GeneratorConfig(users=600, events=60_000, seed=42, churn_share=0.12,
                                   drift_at=drift_at, drift_share=1.0))
    valid = valid_frame(log.values, now_ms=log.end_ms)
    trained = log.start_ms + 25 * DAY_MS
    times = [trained + k * DAY_MS for k in range(1, 6)]
    settings = Settings(data_dir=tmp)
    write_history(settings.history_dir, valid, [trained, *times], PARAMS)
    early = log_aggregates(valid[valid["ts"] <= trained], watermark_ms=WATERMARK_MS,
                           params=PARAMS)
    model = fit_model(table_from_aggregates(np.asarray(early.users, dtype=object), early.aggs,
                                            trained, PARAMS, "generated"), 7)
    points = drift_over_time(settings, model, times)
    assert [p.as_of_ms for p in points] == times and all(p.users > 500 for p in points)
    first = detected(points)
    return ([(t - log.start_ms) // DAY_MS for t in times],
            None if first is None else (first.as_of_ms - log.start_ms) // DAY_MS)


def test_drift_after_training_is_detected_and_its_absence_is_not(tmp_path: Path) -> None:
    days, first = _scan(tmp_path / "drift", 25.5 / 30)
    assert days == [26, 27, 28, 29, 30]
    assert first is not None and 26 <= first <= 29, first
    _, control = _scan(tmp_path / "control", None)
    assert control is None
