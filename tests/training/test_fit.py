"""Fitting: preprocessing, k selection, profiles, names, baseline, quality on known personas.

The tables are REAL v2 features (tests/support/real_logs.py): a generated log of 600 users
and 60,000 events through the stream's pure step, every user as of the log's end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from segstream.core.contract import FEATURE_SPEC, FeatureSpecMismatch
from segstream.training.data import FeatureTable, table_from_frame
from segstream.training.fit import fit_model
from segstream.training.kmeans import DecayingKMeans
from segstream.training.preprocess import fit_preprocessor, inverse_transform
from segstream.training.profiles import read_overrides
from segstream.training.scaling import pooled_within_std, within_scaled
from segstream.training.selection import select_k
from tests.support.real_logs import PARAMS, RealLog, features_file


def test_preprocessor_follows_the_spec_and_clips() -> None:
    rng = np.random.default_rng(0)
    X = rng.lognormal(2, 1, (1000, len(FEATURE_SPEC)))
    spend = FEATURE_SPEC.index("lifetime_spend")
    X[0, spend] = 1e12  # an absurd spend
    pre = fit_preprocessor(X, clip=5.0)
    assert pre.log1p.tolist() == [f.heavy_tailed for f in FEATURE_SPEC.features]
    z = pre.transform(X)
    assert np.abs(np.median(z, 0)).max() < 1e-9
    assert z[0, spend] == 5.0
    inside = z[1:5]
    np.testing.assert_allclose(inverse_transform(pre, inside), X[1:5], rtol=1e-9)


def test_within_scaling_keeps_the_preprocessor_shape_and_bounds_weights(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    """Only the scales change (serving's fast path reads log1p, centre, scale, clip)."""
    table, _ = labelled
    robust = fit_preprocessor(table.X)
    pre, km = within_scaled(table.X, 7, seed=0, max_weight=100.0)
    assert pre.log1p.tolist() == robust.log1p.tolist() and pre.clip == robust.clip
    np.testing.assert_array_equal(pre.center, robust.center)
    assert (pre.scale >= robust.scale / 100.0 - 1e-12).all()
    z = pre.transform(table.X)
    assert km.cluster_centers_.shape == (7, len(FEATURE_SPEC))
    # at the fixed point a feature not pinned at its bound has ~1 unit of within spread
    free = pre.scale > robust.scale / 100.0 * 1.01
    spread = pooled_within_std(z, km.labels_)[free]
    assert np.abs(spread - 1.0).max() < 0.15


#: ARI bar of the bootstrap on the 600-user log; measured 0.953 (seeds 2, 3: 0.980, 0.982)
ARI_BAR = 0.93


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
    # the profile of the high-spend persona's segment says what sets it apart: spend
    seg = model.assign(table.X).segment_ids
    hi_id = np.bincount(seg[labels == "high_spend_loyalist"]).argmax()
    assert (labels[seg == hi_id] == "high_spend_loyalist").mean() > 0.9
    hi = model.profiles[model.segment_ids.index(int(hi_id))]
    assert {("avg_order_value", "high"), ("lifetime_spend", "high")} & {
        (d["feature"], d["direction"]) for d in hi["distinguishing"]}


def test_fit_refuses_a_table_of_unknown_feature_params(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    import dataclasses

    bare = dataclasses.replace(labelled[0], feature_params=None)
    with pytest.raises(ValueError, match="does not say which feature params"):
        fit_model(bare, 7, seed=42)


def test_k_selection_votes_and_its_pick_is_a_good_partition(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    """`--k auto` votes on robust-scaled features. On real features the sparse
    casual_browser / decaying_at_risk pair is one blob at that scaling, so the vote is
    6 for 7 personas (measured on seeds 1-3: 6, 6, 5); the pick must still be a
    partition that recovers the personas."""
    table, labels = labelled
    Z = fit_preprocessor(table.X).transform(table.X)
    sel = select_k(Z, range(4, 10), seed=42)
    assert [int(r["k"]) for r in sel.rows] == list(range(4, 10))
    assert set(sel.votes) == {"silhouette", "calinski_harabasz", "davies_bouldin", "elbow"}
    assert sel.best_k == max(set(sel.votes.values()), key=list(sel.votes.values()).count)
    assert sel.best_k == 6
    picked = fit_model(table, sel.best_k, seed=42).assign(table.X).segment_ids
    assert adjusted_rand_score(labels, picked) >= 0.85


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


def test_within_segment_scaling_beats_robust_scaling(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    """The reason training/scaling.py exists. Measured with the same bootstrap on 400-user
    logs, seeds 3-6: robust 0.882, 0.909, 0.807, 0.856; within-segment 0.980, 0.974,
    0.988, 0.968."""
    table, truth = labelled
    robust = fit_preprocessor(table.X).transform(table.X)
    plain = DecayingKMeans(n_clusters=7, random_state=0).fit(robust).labels_
    scaled = fit_model(table, 7, seed=0).assign(table.X).segment_ids
    assert (adjusted_rand_score(truth, scaled)
            > adjusted_rand_score(truth, plain) + 0.02)
