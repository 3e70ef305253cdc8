"""Fitting: preprocessing, k selection, profiles, names, baseline, quality on known personas.

The tables are REAL v2 features (tests/support/real_logs.py): a generated log of 600 users
and 60,000 events through the stream's pure step, every user as of the log's end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from segstream.core.contract import FEATURE_SPEC, PURCHASED, FeatureSpecMismatch
from segstream.training.data import FeatureTable, table_from_frame
from segstream.training.fit import fit_model
from segstream.training.kmeans import DecayingKMeans
from segstream.training.preprocess import (
    FLAG_Z,
    MAX_CLIPPED_SHARE,
    applies_to,
    clip_floor,
    clipped_shares,
    fit_preprocessor,
    inverse_transform,
)
from segstream.training.profiles import read_overrides
from segstream.training.scaling import pooled_within_std, within_scaled
from tests.support.real_logs import PARAMS, RealLog, features_file


def _with_buyers(X: np.ndarray, buyers: np.ndarray) -> np.ndarray:
    """``X`` with the purchase flag set for ``buyers`` and the purchase features of the
    others as the features have them: 0, or missing where the spec says so."""
    X = X.copy()
    X[:, FEATURE_SPEC.index(PURCHASED)] = buyers.astype(float)
    for j, f in enumerate(FEATURE_SPEC.features):
        if f.given:
            X[~buyers, j] = np.nan if f.nullable else 0.0
    return X


def test_preprocessor_follows_the_spec_and_clips() -> None:
    rng = np.random.default_rng(0)
    buyers = rng.random(1000) < 0.4
    X = _with_buyers(rng.lognormal(2, 1, (1000, len(FEATURE_SPEC))), buyers)
    spend = FEATURE_SPEC.index("lifetime_spend")
    X[np.flatnonzero(buyers)[0], spend] = 1e12  # an absurd spend
    pre = fit_preprocessor(X, clip=5.0)
    assert pre.log1p.tolist() == [f.heavy_tailed for f in FEATURE_SPEC.features]
    z = pre.transform(X)
    plain = [j for j, f in enumerate(FEATURE_SPEC.features) if not f.given and f.kind != "flag"]
    cond = [j for j, f in enumerate(FEATURE_SPEC.features) if f.given]
    # centred on everyone, or on the buyers for a purchase feature; the others at 0
    assert np.abs(np.median(z[:, plain], 0)).max() < 1e-9
    assert np.abs(np.median(z[buyers][:, cond], 0)).max() < 1e-9
    assert (z[~buyers][:, cond] == 0.0).all() and not np.isnan(z).any()
    assert set(z[:, FEATURE_SPEC.index(PURCHASED)].tolist()) == {0.0, FLAG_Z}
    assert z[np.flatnonzero(buyers)[0], spend] == 5.0
    inside = np.flatnonzero(buyers)[1:5]
    np.testing.assert_allclose(inverse_transform(pre, z[inside])[:, plain + cond],
                               X[inside][:, plain + cond], rtol=1e-9)


def test_no_feature_has_more_than_5_percent_of_its_users_at_the_clip(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    """The bound of training/preprocess.py, on real features: 40-60 % of the users
    never bought, which used to put every buyer at the clip on nine features."""
    table, _ = labelled
    bought = table.X[:, FEATURE_SPEC.index(PURCHASED)] == 1.0
    assert 0.2 < bought.mean() < 0.8  # the case the bound is for
    for pre in (fit_preprocessor(table.X), fit_model(table, 7, seed=42).preprocessor):
        shares = clipped_shares(table.X, pre)
        worst = int(np.argmax(shares))
        assert shares[worst] <= MAX_CLIPPED_SHARE, (FEATURE_SPEC.names[worst], shares[worst])


def test_a_missing_purchase_feature_is_neither_a_number_nor_a_pull(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    """Never bought: purchase recency and order value are missing (no sentinel), and in
    the model's space the purchase features sit at the buyers' centre."""
    table, _ = labelled
    never = table.X[:, FEATURE_SPEC.index(PURCHASED)] == 0.0
    for name in ("purchase_recency_days", "avg_order_value"):
        col = table.X[:, FEATURE_SPEC.index(name)]
        assert np.isnan(col[never]).all() and np.isfinite(col[~never]).all()
    model = fit_model(table, 7, seed=42)
    z = model.preprocessor.transform(table.X[never])
    cond = [j for j, f in enumerate(FEATURE_SPEC.features) if f.given]
    assert (z[:, cond] == 0.0).all()


def test_within_scaling_keeps_the_preprocessor_shape_and_bounds_weights(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    """Only the scales change (serving's fast path reads log1p, centre, scale, clip)."""
    table, _ = labelled
    robust = fit_preprocessor(table.X)
    pre, km = within_scaled(table.X, 7, seed=0, max_weight=100.0)
    assert pre.log1p.tolist() == robust.log1p.tolist() and pre.clip == robust.clip
    np.testing.assert_array_equal(pre.center, robust.center)
    np.testing.assert_array_equal(pre.given_columns, robust.given_columns)
    lowest = np.maximum(robust.scale / 100.0, clip_floor(table.X, robust))
    assert (pre.scale >= lowest - 1e-12).all()
    flag = FEATURE_SPEC.index(PURCHASED)
    assert pre.scale[flag] == robust.scale[flag]  # a flag keeps its fixed weight
    z = pre.transform(table.X)
    assert km.cluster_centers_.shape == (7, len(FEATURE_SPEC))
    # at the fixed point a feature not pinned at a bound has ~1 unit of within spread
    # (over the users it describes)
    applies = np.column_stack([applies_to(table.X, pre.given_columns, j)
                               for j in range(len(FEATURE_SPEC))])
    free = pre.scale > lowest * 1.01
    free[flag] = False
    spread = pooled_within_std(z, km.labels_, applies)[free]
    assert np.abs(spread - 1.0).max() < 0.15


#: ARI bar of the bootstrap on the 600-user log; measured 0.910 (seeds 2, 3: 0.886, 0.945;
#: most of the rest is casual browsers who happen to be silent, named lapsing)
ARI_BAR = 0.89


def test_fit_recovers_the_personas(labelled: tuple[FeatureTable, np.ndarray],
                                   log_a: RealLog) -> None:
    table, labels = labelled
    model = fit_model(table, 7, seed=42)
    model.check_spec()
    ari = adjusted_rand_score(labels, model.assign(table.X).segment_ids)
    assert ari >= ARI_BAR, f"ARI {ari:.4f} < {ARI_BAR}"
    assert model.segment_ids == tuple(range(1, 8))
    assert len(set(model.personas)) == 7
    assert sum(p["share"] for p in model.profiles) == pytest.approx(1.0)
    assert model.info["rows"] == len(table) and model.info["data_start_ms"] > 0
    # the snapshot it was fitted on: its time and its feature params
    assert model.info["as_of_ms"] == log_a.end_ms == table.as_of_ms
    assert model.info["feature_params"] == PARAMS.describe()
    # drift baseline in the shape serving reads
    b = model.baseline
    assert set(b["features"]) == {f.name for f in FEATURE_SPEC.features
                                  if not f.grows_with_age}
    for spec in b["features"].values():
        assert len(spec["edges"]) == len(spec["proportions"]) + 1
        assert sum(spec["proportions"]) == pytest.approx(1.0)
    assert set(b["segment_shares"]) == {str(s) for s in model.segment_ids}
    assert b["distance"]["p50"] <= b["distance"]["p90"] <= b["distance"]["p99"]
    # the high-spend loyalists are one segment, and its profile says so in currency
    seg = model.assign(table.X).segment_ids
    hi_id = np.bincount(seg[labels == "high_spend_loyalist"]).argmax()
    assert (seg[labels == "high_spend_loyalist"] == hi_id).mean() >= 0.8
    assert (labels[seg == hi_id] == "high_spend_loyalist").mean() > 0.9
    hi = model.profiles[model.segment_ids.index(int(hi_id))]
    assert hi["kpis"]["median_order_value"] >= 150 and hi["kpis"]["buyer_share"] > 0.9
    assert "big spenders" in hi["name"]


def test_fit_refuses_a_table_of_unknown_feature_params(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    import dataclasses

    bare = dataclasses.replace(labelled[0], feature_params=None)
    with pytest.raises(ValueError, match="does not say which feature params"):
        fit_model(bare, 7, seed=42)


def test_persona_overrides_from_yaml(tmp_path: Path,
                                     labelled: tuple[FeatureTable, np.ndarray]
                                     ) -> None:
    f = tmp_path / "names.yaml"
    f.write_text('3: "Binge viewers"\n5: {name: "High-spend loyalists", description: "buy"}\n')
    overrides = read_overrides(f)
    model = fit_model(labelled[0], 7, seed=42, overrides=overrides)
    by_id = dict(zip(model.segment_ids, model.personas, strict=True))
    assert by_id[3] == "Binge viewers" and by_id[5] == "High-spend loyalists"
    assert model.profiles[model.segment_ids.index(5)]["description"] == "buy"
    bad = tmp_path / "bad.yaml"
    bad.write_text("power: x\n")
    with pytest.raises(ValueError, match="not a segment id"):
        read_overrides(bad)


def test_feature_table_refuses_another_spec(log_a: RealLog) -> None:
    df = features_file(log_a.state.users, log_a.state.aggs, None)
    assert len(table_from_frame(df, PARAMS)) == len(df)
    with pytest.raises(FeatureSpecMismatch, match="'v0'"):
        table_from_frame(df.assign(spec_version="v0"), PARAMS)
    with pytest.raises(ValueError, match="lacks columns"):
        table_from_frame(df.drop(columns=[FEATURE_SPEC.names[3]]), PARAMS)


def test_partial_fit_forgets_with_a_half_life() -> None:
    rng = np.random.default_rng(0)
    km = DecayingKMeans.from_centroids(np.array([[0.0], [10.0]]), np.array([1000.0, 1000.0]),
                                       half_life=1000)
    for _ in range(10):  # the first cluster moves to 2.0
        km.partial_fit(rng.normal(2.0, 0.1, (500, 1)))
    assert km.cluster_centers_[0, 0] == pytest.approx(2.0, abs=0.05)
    assert km.counts_[1] == pytest.approx(1000 * 0.5 ** 5, rel=1e-6)
    no_forget = DecayingKMeans.from_centroids(np.array([[0.0], [10.0]]),
                                              np.array([1000.0, 1000.0]))
    no_forget.partial_fit(np.full((1000, 1), 2.0))
    assert no_forget.cluster_centers_[0, 0] == pytest.approx(1.0)
