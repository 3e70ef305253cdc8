"""Training quality and cost on REAL features (results: ``## Training`` in docs/benchmarks.md).

    .venv/bin/python -m benchmarks.training [--users 2000 --events 200000 --seed 1]

Data: ``segstream generate`` (personas with known truth) -> the batch feature code of
``segstream features`` (streaming.batch parse + arrival rules + streaming.features
transform) -> Parquet, cached under ``benchmarks/results/training-cache/<key>/``
(gitignored, key = generator parameters) so reruns skip Spark. A cold run computes
features with Spark (minutes on 2 shared cores).

1. ARI of the bootstrap fit (k=7) vs the persona truth, on the main data set and on
   a check set with another seed and user count (``--check-*``).
2. Incremental model: bootstrap on 10 % of the rows, then partial_fit (no
   forgetting) over the rest; inertia on all rows vs a full KMeans refit, both in
   the same preprocessed space.
3. Drift (``--drift-at 0.5``): the log is cut at the drift point; the model is
   bootstrapped on the features of the events before it, then follows the features
   of the events after it with decayed partial_fit (half-life ``--half-life`` rows,
   batches of ``--batch`` rows, passes over the post-drift users in a seeded shuffle);
   rows until ARI >= 0.9 against ``persona_after_drift`` on all post-drift users.
   Then the update loop's other path: the drift check against the pre-drift model's
   baseline after 250/500/1000/all post-drift rows, and a full refit on those rows
   (what a drift-triggered refit does), scored on all post-drift users.
4. partial_fit cost per 10k rows (19 features), with sklearn's
   MiniBatchKMeans.partial_fit as the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score

from benchmarks.common import machine, median
from segstream.config import Settings
from training.data import FeatureTable, read_table, read_truth
from training.fit import fit_model
from training.kmeans import DecayingKMeans
from training.scaling import within_scaled
from training.update import drift_of

CACHE = Path(__file__).resolve().parent / "results" / "training-cache"


@dataclass(frozen=True)
class Dataset:
    users: int
    events: int
    seed: int
    drift_at: float | None = None

    @property
    def key(self) -> str:
        drift = "" if self.drift_at is None else f"-drift{self.drift_at:g}"
        return f"u{self.users}-e{self.events}-s{self.seed}{drift}"

    @property
    def dir(self) -> Path:
        return CACHE / self.key


def prepare(ds: Dataset, log: bool = True) -> Path:
    """Cache dir with ``truth.csv`` and ``features.parquet`` (or ``pre``/``post`` with drift)."""
    out = ds.dir
    wanted = ["truth.csv", "meta.json"] + (
        ["features.parquet"] if ds.drift_at is None else ["pre.parquet", "post.parquet"])
    if all((out / f).exists() for f in wanted):
        return out
    from pyspark.sql import functions as F

    from segstream.config import Settings
    from segstream.generator import GeneratorConfig, generate
    from streaming.batch import accepted_events, features_of, read_event_log
    from streaming.session import get_spark

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    gen = generate(GeneratorConfig(users=ds.users, events=ds.events, seed=ds.seed,
                                   drift_at=ds.drift_at))
    events = out / "events.jsonl"
    gen.write_jsonl(events)
    gen.write_truth(out / "truth.csv")
    t_gen = time.perf_counter() - t0
    settings = Settings()
    spark = get_spark(settings, "benchmark-training")
    try:
        accepted = accepted_events(read_event_log(spark, events), settings).cache()
        parts = ({"features": None} if ds.drift_at is None else
                 {"pre": F.col("ts") < gen.drift_ms, "post": F.col("ts") >= gen.drift_ms})
        rows = {}
        for name, cond in parts.items():
            t1 = time.perf_counter()
            ev = accepted if cond is None else accepted.where(cond)
            pdf = features_of(ev, settings).toPandas().sort_values("user_id").reset_index(
                drop=True)
            pdf.to_parquet(out / f"{name}.parquet", index=False)
            rows[name] = {"users": len(pdf), "seconds": round(time.perf_counter() - t1, 1)}
            if log:
                print(f"   {ds.key}: {name} features of {len(pdf):,} users in "
                      f"{rows[name]['seconds']} s", flush=True)
    finally:
        spark.stop()
    events.unlink()
    meta = {"dataset": ds.__dict__, "generate_seconds": round(t_gen, 1), "parts": rows,
            "drift_ms": gen.drift_ms, "start_ms": gen.start_ms, "end_ms": gen.end_ms}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return out


def labelled(path: Path, truth_csv: Path, *, after_drift: bool = False
             ) -> tuple[FeatureTable, np.ndarray]:
    table = read_table(path)
    truth = read_truth(truth_csv)
    table = table.take(np.flatnonzero([u in truth for u in table.user_ids]))
    return table, np.array([truth[u][1 if after_drift else 0] for u in table.user_ids])


def bootstrap_ari(ds: Dataset) -> float:
    table, labels = labelled(prepare(ds) / "features.parquet", ds.dir / "truth.csv")
    t0 = time.perf_counter()
    model = fit_model(table, 7, seed=42)
    seconds = time.perf_counter() - t0
    ari = adjusted_rand_score(labels, model.assign(table.X).segment_ids)
    print(f"1. {ds.key}: bootstrap fit k=7 on {len(table):,} users: ARI vs truth {ari:.4f} "
          f"(fit + profiles + baseline {seconds:.1f} s)", flush=True)
    return float(ari)


def incremental_inertia(ds: Dataset) -> None:
    table, _ = labelled(prepare(ds) / "features.parquet", ds.dir / "truth.csv")
    pre, _ = within_scaled(table.X, 7, seed=42)
    Z = pre.transform(table.X)[np.random.default_rng(0).permutation(len(table))]
    boot = len(Z) // 10
    km = DecayingKMeans(n_clusters=7, random_state=42).fit(Z[:boot])
    for lo in range(boot, len(Z), 100):
        km.partial_fit(Z[lo:lo + 100])
    inc = km.score_inertia(Z)
    full = KMeans(7, n_init=10, random_state=42).fit(Z).inertia_
    print(f"2. {ds.key}: incremental ({boot:,} bootstrap rows + {len(Z) - boot:,} partial_fit "
          f"rows in batches of 100) inertia {inc:.1f} vs full KMeans refit {full:.1f}: "
          f"{100 * (inc / full - 1):+.2f} %", flush=True)


def drift(ds: Dataset, half_life: float, batch: int, passes: int) -> None:
    d = prepare(ds)
    pre_t, _ = labelled(d / "pre.parquet", d / "truth.csv")
    post_t, post_lab = labelled(d / "post.parquet", d / "truth.csv", after_drift=True)
    model = fit_model(pre_t, 7, seed=42)
    Z = model.preprocessor.transform(post_t.X)
    km = DecayingKMeans.from_centroids(model.centroids,
                                       np.asarray(model.info["cluster_weights"]),
                                       half_life=half_life, random_state=42)
    start = adjusted_rand_score(post_lab, km.predict(Z))
    needed, seen, curve = (0 if start >= 0.9 else None), 0, []
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(passes):
        order = rng.permutation(len(Z))
        for lo in range(0, len(Z), batch):
            if needed is not None:
                break
            km.partial_fit(Z[order[lo:lo + batch]])
            seen += len(order[lo:lo + batch])
            ari = adjusted_rand_score(post_lab, km.predict(Z))
            curve.append((seen, round(float(ari), 3)))
            if ari >= 0.9:
                needed = seen
    end = adjusted_rand_score(post_lab, km.predict(Z))
    print(f"3. {ds.key}: bootstrap on {len(pre_t):,} pre-drift users; pre-drift model's ARI "
          f"vs post-drift truth on {len(post_t):,} post-drift users {start:.4f}; rows of "
          f"partial_fit (half-life {half_life:g}, batches of {batch}) until ARI >= 0.9: "
          f"{needed} (of at most {passes} x {len(Z):,}); ARI then {end:.4f} "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"   ARI after rows: {curve[:: max(1, len(curve) // 12)]}", flush=True)
    # the update loop's other path: drift check against the parent's baseline, then a
    # full refit on the window of rows seen so far
    settings = Settings()
    order = np.random.default_rng(0).permutation(len(post_t))
    for n in (250, 500, 1000, len(order)):
        seen_t = post_t.take(order[:n])
        state = drift_of(model, seen_t.X)
        refit = fit_model(seen_t, 7, seed=42)
        refit_ari = adjusted_rand_score(post_lab, refit.assign(post_t.X).segment_ids)
        print(f"   after {n:,} post-drift rows: drift psi_max {state.psi_max:.2f} "
              f"({state.psi_feature}), distance ratio {state.distance_ratio:.2f}, "
              f"triggered={state.triggered(settings)}; refit on those rows: ARI on all "
              f"post-drift users {refit_ari:.4f}", flush=True)


def cost(ds: Dataset) -> None:
    table, _ = labelled(prepare(ds) / "features.parquet", ds.dir / "truth.csv")
    model = fit_model(table, 7, seed=42)
    Z = model.preprocessor.transform(table.X)
    rows = np.resize(Z, (10_000, Z.shape[1]))
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
          f"ratio {median(ours) / median(base):.2f}); median of 7", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check-users", type=int, default=3000)
    ap.add_argument("--check-events", type=int, default=300_000)
    ap.add_argument("--check-seed", type=int, default=2)
    ap.add_argument("--drift-at", type=float, default=0.5)
    ap.add_argument("--drift-events", type=int, help="events of the drift log (default: --events)")
    ap.add_argument("--half-life", type=float, default=1000.0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--passes", type=int, default=3)
    a = ap.parse_args()
    print(f"machine: {machine()}")
    main_ds = Dataset(a.users, a.events, a.seed)
    bootstrap_ari(main_ds)
    bootstrap_ari(Dataset(a.check_users, a.check_events, a.check_seed))
    incremental_inertia(main_ds)
    drift(Dataset(a.users, a.drift_events or a.events, a.seed, a.drift_at), a.half_life,
          a.batch, a.passes)
    cost(main_ds)


if __name__ == "__main__":
    main()
