"""Training quality and cost (results in docs/training section of docs/benchmarks.md).

    .venv/bin/python -m benchmarks.training [--users 20000]

1. ARI of the bootstrap fit (k=7) against the persona ground truth.
2. Incremental model: bootstrap on 10 % of the rows, then decayed partial_fit
   (no forgetting) over the rest; its inertia on all rows vs a full KMeans refit.
3. Drift: a model fitted before the drift follows post-drift rows with partial_fit
   (half-life 20k rows); rows until ARI >= 0.9 against the post-drift truth.
4. partial_fit cost per 10k rows (19 features), with sklearn's
   MiniBatchKMeans.partial_fit as the baseline measured in the same run.

Data: until streaming/'s batch features are on main, the labelled feature tables
come from tests/training/synth.py (drawn around each persona). Pass
``--features F.parquet --truth T.csv`` (from `segstream generate --truth` and
`segstream features`) to measure ARI on real computed features too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score

from benchmarks.common import machine, median
from tests.training.synth import persona_features
from training.data import read_table, read_truth, table_from_frame
from training.fit import fit_model
from training.kmeans import DecayingKMeans
from training.preprocess import fit_preprocessor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--features", type=Path)
    ap.add_argument("--truth", type=Path)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    n = args.users

    df, labels = persona_features(n, seed=1)
    table = table_from_frame(df)
    t0 = time.perf_counter()
    model = fit_model(table, 7, seed=42)
    fit_s = time.perf_counter() - t0
    ari = adjusted_rand_score(labels, model.assign(table.X).segment_ids)
    print(f"1. bootstrap fit k=7 on {n:,} users: ARI vs truth {ari:.4f} "
          f"(fit + profiles + baseline {fit_s:.1f} s)")
    if args.features and args.truth:
        real = read_table(args.features)
        truth = read_truth(args.truth)
        keep = np.array([u in truth for u in real.user_ids])
        real = real.take(np.flatnonzero(keep))
        m = fit_model(real, 7, seed=42)
        lab = np.array([truth[u][0] for u in real.user_ids])
        print(f"   real features {args.features} ({len(real):,} users): ARI "
              f"{adjusted_rand_score(lab, m.assign(real.X).segment_ids):.4f}")

    big, _ = persona_features(5 * n, seed=2)
    X = table_from_frame(big).X
    pre = fit_preprocessor(X)
    Z = pre.transform(X)
    boot = len(Z) // 10
    km = DecayingKMeans(n_clusters=7, random_state=42).fit(Z[:boot])
    for lo in range(boot, len(Z), 5000):
        km.partial_fit(Z[lo:lo + 5000])
    inc = km.score_inertia(Z)
    full = KMeans(7, n_init=3, random_state=42).fit(Z).inertia_
    print(f"2. incremental ({boot:,} bootstrap rows + {len(Z) - boot:,} partial_fit rows) "
          f"inertia {inc:.1f} vs full KMeans refit {full:.1f}: {100 * (inc / full - 1):+.2f} %")

    pre_df, _ = persona_features(n, seed=3)
    pre_model = fit_model(table_from_frame(pre_df), 7, seed=42)
    post_df, _ = persona_features(3 * n, seed=4, after_drift=True)
    post = pre_model.preprocessor.transform(table_from_frame(post_df).X)
    eval_df, eval_labels = persona_features(5000, seed=5, after_drift=True)
    ev = pre_model.preprocessor.transform(table_from_frame(eval_df).X)
    km = DecayingKMeans.from_centroids(pre_model.centroids,
                                       np.asarray(pre_model.info["cluster_weights"]),
                                       half_life=20_000, random_state=42)
    start = adjusted_rand_score(eval_labels, km.predict(ev))
    rows_needed = 0 if start >= 0.9 else None
    step = 1000
    for lo in range(0, len(post), step):
        if rows_needed is not None:
            break
        km.partial_fit(post[lo:lo + step])
        if adjusted_rand_score(eval_labels, km.predict(ev)) >= 0.9:
            rows_needed = lo + step
    end = adjusted_rand_score(eval_labels, km.predict(ev))
    print(f"3. drift: pre-drift model's ARI vs post-drift truth {start:.4f}; rows of "
          f"partial_fit (batches of {step}) until ARI >= 0.9: {rows_needed}; "
          f"ARI then {end:.4f}")

    rows = Z[:10_000]
    ours, base = [], []
    for _ in range(7):
        k = DecayingKMeans.from_centroids(model.centroids, np.ones(7), half_life=1e5)
        t0 = time.perf_counter()
        k.partial_fit(rows)
        ours.append(time.perf_counter() - t0)
        mb = MiniBatchKMeans(7, init=model.centroids, n_init=1)
        mb.partial_fit(rows[:100])
        t0 = time.perf_counter()
        mb.partial_fit(rows)
        base.append(time.perf_counter() - t0)
    print(f"4. partial_fit per 10k rows x 19 features: {1000 * median(ours):.2f} ms "
          f"(sklearn MiniBatchKMeans.partial_fit {1000 * median(base):.2f} ms, "
          f"ratio {median(ours) / median(base):.2f}); median of 7")


if __name__ == "__main__":
    main()
