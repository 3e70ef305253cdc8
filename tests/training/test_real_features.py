"""Training on REAL features: generated events -> streaming.batch features -> fit.

The stand-in tables of tests/training/synth.py are separable by construction (ARI
1.0); these run the feature code `segstream features` runs on a small generated log
(400 users, 40,000 events, ~100 events per user as in the benchmark) through the
session-wide ``spark`` fixture.

Bar: ARI >= 0.90 at this size. Measured with this code at 400 users / 40,000
events: seeds 3, 4, 5, 6 gave 0.982, 0.954, 0.972, 0.942, so 0.90 holds with margin
where issue 4's 0.95 would not (seed 6); the 0.95 figure is the benchmark's
(docs/benchmarks.md, Training). The sparse casual_browser / decaying_at_risk pair
decides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from segstream.generator import GeneratorConfig, generate
from training.data import FeatureTable, table_from_frame
from training.fit import fit_model
from training.kmeans import DecayingKMeans
from training.preprocess import fit_preprocessor

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ARI_BAR = 0.90


@pytest.fixture(scope="module")
def real(spark: Any, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[FeatureTable, np.ndarray]:
    from segstream.config import Settings
    from streaming.batch import compute_features_pandas

    log = generate(GeneratorConfig(users=400, events=40_000, seed=3))
    path = Path(tmp_path_factory.mktemp("real")) / "events.jsonl"
    log.write_jsonl(path)
    table = table_from_frame(compute_features_pandas(spark, path, Settings()), "real")
    return table, np.array([log.truth[u].persona for u in table.user_ids])


def test_bootstrap_recovers_the_personas_from_real_features(
        real: tuple[FeatureTable, np.ndarray]) -> None:
    table, truth = real
    assert len(table) >= 380  # nearly every user has events
    model = fit_model(table, 7, seed=0)
    ari = adjusted_rand_score(truth, model.assign(table.X).segment_ids)
    assert ari >= ARI_BAR, f"ARI {ari:.4f} < {ARI_BAR}"


def test_within_segment_scaling_beats_robust_scaling(
        real: tuple[FeatureTable, np.ndarray]) -> None:
    """The reason training/scaling.py exists, pinned on seed 3 (0.876 -> 0.982).

    Not every small log shows it: over seeds 3-6 at 400 users robust scaling with the
    same bootstrap gave 0.876, 0.903, 0.779, 0.965 and within-segment scaling 0.982,
    0.954, 0.972, 0.942 (seed 6 the other way round).
    """
    table, truth = real
    robust = fit_preprocessor(table.X).transform(table.X)
    plain = DecayingKMeans(n_clusters=7, random_state=0).fit(robust).labels_
    scaled = fit_model(table, 7, seed=0).assign(table.X).segment_ids
    assert (adjusted_rand_score(truth, scaled)
            > adjusted_rand_score(truth, plain) + 0.02)
