"""The model artefact's vectorised assignment against a plain per-row reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segstream.core.contract import FEATURE_SPEC
from segstream.core.segment_model import Preprocessor, SegmentModel

D = len(FEATURE_SPEC)


def make_model(k: int = 4, seed: int = 0) -> SegmentModel:
    rng = np.random.default_rng(seed)
    pre = Preprocessor(log1p=np.array([f.heavy_tailed for f in FEATURE_SPEC.features]),
                       center=rng.normal(0, 1, D), scale=rng.uniform(0.5, 2.0, D), clip=3.0)
    return SegmentModel(spec_version=FEATURE_SPEC.version, feature_names=FEATURE_SPEC.names,
                        preprocessor=pre, centroids=rng.normal(0, 1.5, (k, D)),
                        segment_ids=tuple(range(10, 10 + k)),
                        personas=tuple(f"p{i}" for i in range(k)), temperature=2.0)


def reference(model: SegmentModel, row: np.ndarray, top: int) -> tuple[int, float, list[float],
                                                                        list[str]]:
    """One row the slow, obvious way: loops and the formulas from the docstrings."""
    pre = model.preprocessor
    z = []
    for j, v in enumerate(row):
        t = np.log1p(max(v, 0.0)) if pre.log1p[j] else v
        z.append(min(max((t - pre.center[j]) / pre.scale[j], -pre.clip), pre.clip))
    d2 = [sum((zj - cj) ** 2 for zj, cj in zip(z, c, strict=True)) for c in model.centroids]
    order = sorted(range(model.k), key=lambda i: d2[i])
    w = [np.exp(-d / model.temperature) for d in d2]
    probs = [wi / sum(w) for wi in w]
    c1, c2 = model.centroids[order[0]], model.centroids[order[1]]
    contrib = [(z[j] - c2[j]) ** 2 - (z[j] - c1[j]) ** 2 for j in range(D)]
    best = sorted(range(D), key=lambda j: -contrib[j])[:top]
    names = [model.feature_names[j] for j in best if contrib[j] > 0]
    return order[0], float(np.sqrt(d2[order[0]])), probs, names


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_assign_equals_the_per_row_reference(seed: int) -> None:
    model = make_model(seed=seed)
    rng = np.random.default_rng(100 + seed)
    x = np.abs(rng.normal(0, 3, (60, D))) * rng.choice([1, 10, 100], (60, D))
    a = model.assign(x, reasons=3)
    for i in range(len(x)):
        idx, dist, probs, names = reference(model, x[i], 3)
        assert a.index[i] == idx and a.segment_ids[i] == 10 + idx
        assert a.distances[i] == pytest.approx(dist, rel=1e-9)
        np.testing.assert_allclose(a.probabilities[i], probs, rtol=1e-9, atol=1e-12)
        assert [r["feature"] for r in model.reasons(x[i])] == names


def test_without_reasons_assign_is_the_same_assignment() -> None:
    model = make_model()
    x = np.abs(np.random.default_rng(7).normal(0, 3, (200, D)))
    with_r, without = model.assign(x, reasons=3), model.assign(x)
    assert with_r.index.tolist() == without.index.tolist()
    assert without.reason_cols.shape == (200, 0)


def test_transform_leaves_the_input_alone() -> None:
    model = make_model()
    x = np.full((2, D), 5.0)
    model.preprocessor.transform(x)
    assert (x == 5.0).all()


def test_save_load_round_trip_and_spec_check(tmp_path: Path) -> None:
    model = make_model()
    loaded = SegmentModel.load(model.save(tmp_path / "m"), version="3")
    x = np.abs(np.random.default_rng(1).normal(0, 3, (20, D)))
    assert loaded.version == "3"
    np.testing.assert_array_equal(loaded.assign(x).segment_ids, model.assign(x).segment_ids)
    loaded.check_spec()
    loaded.spec_version = "v0"
    with pytest.raises(ValueError, match="feature spec 'v0'"):
        loaded.check_spec()
