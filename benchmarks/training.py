"""Training quality and cost on REAL features of the current spec (docs/training.md,
*Measured*).

    .venv/bin/python -m benchmarks.training [--users 2000 --events 200000 --seed 1]
        [--v1-tree /tmp/v1]

Data: ``segstream generate`` logs (personas with known truth), cached as
``events.jsonl.gz`` + ``truth.csv`` under ``benchmarks/results/training-cache/<key>/``
(gitignored, key = generator parameters). Features: the pure step that the stream and
``segstream features`` run (``segstream.streaming.step.valid_frame`` + ``log_aggregates``:
validator, arrival rules, aggregate fold), every user evaluated as of the log's newest
event (``segstream.training.data.table_from_aggregates``), the snapshot ``segstream train``
fits on.

1. ARI of the bootstrap fit (k=7, seed 42) vs the persona truth, on the main set and
   on a check set (``--check-*``). With ``--v1-tree DIR`` (a checkout of feature spec
   v1, e.g. ``git worktree add /tmp/v1 4f3c5de``), also v1's ARI on the SAME log
   files: a subprocess with ``PYTHONPATH=DIR`` runs v1's validator, arrival rules,
   ``streaming.features.user_features`` and v1's ``training.fit.fit_model`` (v1's own
   layout).
2. Incremental model: bootstrap on 10 % of the rows, then partial_fit (no
   forgetting) over the rest; inertia on all rows vs a full KMeans refit, both in
   the same preprocessed space.
3. Drift (``--drift-at 0.5``): the model is bootstrapped on every user as of the
   drift point (events before it), then follows every user as of the log's end
   (all events; what the `features` topic carries then) with decayed partial_fit;
   rows until ARI >= 0.9 against ``persona_after_drift``. Then the update loop's
   other path: the drift check against the pre-drift model's baseline after
   250/500/1000/all rows, and a full refit on those rows. A control runs the same
   check on the log without drift (bootstrap as of its midpoint, check as of its end).
4. partial_fit cost per 10k rows (28 features), with sklearn's
   MiniBatchKMeans.partial_fit as the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score

from benchmarks.common import machine, median
from segstream.config import Settings
from segstream.core.contract import FEATURE_SPEC
from segstream.training.data import FeatureTable, read_truth, table_from_aggregates
from segstream.training.fit import fit_model
from segstream.training.kmeans import DecayingKMeans
from segstream.training.scaling import within_scaled
from segstream.training.update import drift_of

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

    @property
    def command(self) -> str:
        drift = "" if self.drift_at is None else f" --drift-at {self.drift_at:g}"
        return (f"segstream generate --users {self.users} --events {self.events} "
                f"--seed {self.seed}{drift}")


def prepare(ds: Dataset) -> Path:
    """Cache dir with ``events.jsonl.gz``, ``truth.csv`` and ``meta.json``."""
    out = ds.dir
    if all((out / f).exists() for f in ("events.jsonl.gz", "truth.csv", "meta.json")):
        return out
    from segstream.sources.generator import GeneratorConfig, generate

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    gen = generate(GeneratorConfig(users=ds.users, events=ds.events, seed=ds.seed,
                                   drift_at=ds.drift_at))
    gen.write_jsonl(out / "events.jsonl.gz")
    gen.write_truth(out / "truth.csv")
    meta = {"dataset": ds.__dict__, "generate_seconds": round(time.perf_counter() - t0, 1),
            "drift_ms": gen.drift_ms, "start_ms": gen.start_ms, "end_ms": gen.end_ms,
            "sha256": hashlib.sha256(b"\n".join(gen.values)).hexdigest()}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return out


def meta_of(ds: Dataset) -> dict[str, object]:
    result: dict[str, object] = json.loads((prepare(ds) / "meta.json").read_text())
    return result


def snapshot_of(ds: Dataset, *, before_ms: int | None = None, after_drift: bool = False
                ) -> tuple[FeatureTable, np.ndarray]:
    """Every user as of the log's newest event (or, with ``before_ms``, of the events
    before it, as of ``before_ms``), labelled with the truth."""
    import gzip

    from segstream.streaming.durations import duration_ms
    from segstream.streaming.step import log_aggregates, valid_frame

    d = prepare(ds)
    settings = Settings()
    params = settings.feature_params()
    with gzip.open(d / "events.jsonl.gz", "rb") as f:
        values = [line.rstrip(b"\n") for line in f]
    end_ms = int(str(meta_of(ds)["end_ms"]))
    valid = valid_frame(values, now_ms=end_ms)
    if before_ms is not None:
        valid = valid[valid["ts"] < before_ms]
    state = log_aggregates(valid, watermark_ms=duration_ms(settings.stream_watermark),
                           params=params)
    as_of = int(state.aggs["last_ms"].max()) if before_ms is None else before_ms
    table = table_from_aggregates(np.asarray(state.users, dtype=object), state.aggs, as_of,
                                  params, ds.key)
    truth = read_truth(d / "truth.csv")
    table = table.take(np.flatnonzero([u in truth for u in table.user_ids]))
    return table, np.array([truth[u][1 if after_drift else 0] for u in table.user_ids])


V1_SCRIPT = """
import gzip, json, sys
import numpy as np, pandas as pd
from sklearn.metrics import adjusted_rand_score
from segstream.config import Settings
from segstream.events import Rejection, validate_event
from streaming.durations import duration_ms
from streaming.features import EVENT_COLUMNS, user_features
from streaming.state import accept_group
from training.data import read_truth, table_from_frame
from training.fit import fit_model

path, truth_csv, now_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
with gzip.open(path, "rb") as f:
    for offset, line in enumerate(f):
        ev = validate_event(line.rstrip(b"\\n"), now_ms=now_ms)
        if not isinstance(ev, Rejection):
            rows.append({**{c: ev[c] for c in EVENT_COLUMNS}, "partition": 0, "offset": offset})
s = Settings()
accepted = accept_group(pd.DataFrame(rows), watermark_ms=duration_ms(s.stream_watermark))
features = user_features(accepted, window_days=s.feature_window_days,
                         session_gap_minutes=s.session_gap_minutes)
table = table_from_frame(features, "v1")
truth = read_truth(truth_csv)
labels = np.array([truth[u][0] for u in table.user_ids])
model = fit_model(table, 7, seed=42)
print(json.dumps({"users": len(table), "features": int(table.X.shape[1]),
                  "spec": model.spec_version,
                  "ari": float(adjusted_rand_score(labels, model.assign(table.X).segment_ids))}))
"""


def v1_ari(ds: Dataset, tree: Path) -> dict[str, object]:
    """v1's features and fit on this data set's log files (a subprocess on ``tree``)."""
    d = prepare(ds)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    env["PYTHONPATH"] = str(tree)
    done = subprocess.run(
        [sys.executable, "-c", V1_SCRIPT, str(d / "events.jsonl.gz"), str(d / "truth.csv"),
         str(meta_of(ds)["end_ms"])], cwd=tree, env=env, capture_output=True, text=True,
        check=False)
    if done.returncode != 0:
        raise RuntimeError(f"v1 run in {tree} failed:\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bootstrap_ari(ds: Dataset, v1_tree: Path | None) -> float:
    table, labels = snapshot_of(ds)
    t0 = time.perf_counter()
    model = fit_model(table, 7, seed=42)
    seconds = time.perf_counter() - t0
    ari = float(adjusted_rand_score(labels, model.assign(table.X).segment_ids))
    print(f"1. {ds.command} (log sha256 {str(meta_of(ds)['sha256'])[:12]}): "
          f"{FEATURE_SPEC.version} ({len(FEATURE_SPEC)} features, as of the log's end) "
          f"bootstrap k=7 on {len(table):,} users: ARI vs truth {ari:.4f} "
          f"(fit {seconds:.1f} s)", flush=True)
    if v1_tree is not None:
        v1 = v1_ari(ds, v1_tree)
        print(f"   v1 ({v1['features']} features, spec {v1['spec']}, code in {v1_tree}) on "
              f"the same log: {v1['users']:,} users, ARI {float(str(v1['ari'])):.4f}; "
              f"{FEATURE_SPEC.version} - v1 = {ari - float(str(v1['ari'])):+.4f}", flush=True)
    return ari


def incremental_inertia(ds: Dataset) -> None:
    table, _ = snapshot_of(ds)
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
    drift_ms = int(str(meta_of(ds)["drift_ms"]))
    pre_t, _ = snapshot_of(ds, before_ms=drift_ms)
    post_t, post_lab = snapshot_of(ds, after_drift=True)
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
    print(f"3. {ds.command}: bootstrap on {len(pre_t):,} users as of the drift point; its "
          f"ARI vs post-drift truth on {len(post_t):,} users as of the end {start:.4f}; rows "
          f"of partial_fit (half-life {half_life:g}, batches of {batch}) until ARI >= 0.9: "
          f"{needed} (of at most {passes} x {len(Z):,}); ARI then {end:.4f} "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"   ARI after rows: {curve[:: max(1, len(curve) // 12)]}", flush=True)
    settings = Settings()
    order = np.random.default_rng(0).permutation(len(post_t))
    for n in (250, 500, 1000, len(order)):
        seen_t = post_t.take(order[:n])
        state = drift_of(model, seen_t.X)
        refit = fit_model(seen_t, 7, seed=42)
        refit_ari = adjusted_rand_score(post_lab, refit.assign(post_t.X).segment_ids)
        print(f"   after {n:,} rows: drift psi_max {state.psi_max:.2f} ({state.psi_feature}), "
              f"distance ratio {state.distance_ratio:.2f}, triggered="
              f"{state.triggered(settings)}; refit on those rows: ARI on all {refit_ari:.4f}",
              flush=True)


def aging_control(ds: Dataset) -> None:
    """The drift check when nothing drifts: bootstrap as of the log's midpoint, then the
    same users as of its end. Time alone moves the as-of and lifetime features."""
    from segstream.core.contract import FEATURE_SPEC
    from segstream.training.baseline import feature_psi

    m = meta_of(ds)
    mid = (int(str(m["start_ms"])) + int(str(m["end_ms"]))) // 2
    pre_t, _ = snapshot_of(ds, before_ms=mid)
    post_t, _ = snapshot_of(ds)
    model = fit_model(pre_t, 7, seed=42)
    state = drift_of(model, post_t.X)
    psi = feature_psi(model.baseline, post_t.X)
    by_basis = {basis: max((f.name for f in FEATURE_SPEC.features if f.time == basis),
                           key=lambda n: psi[n]) for basis in ("as_of", "lifetime", "decayed")}
    print(f"3b. control, {ds.command} (no drift): bootstrap as of the midpoint, drift check "
          f"as of the end: psi_max {state.psi_max:.2f} ({state.psi_feature}), distance "
          f"ratio {state.distance_ratio:.2f}, triggered={state.triggered(Settings())}; "
          "largest PSI by time basis: " + ", ".join(
              f"{b} {n} {psi[n]:.2f}" for b, n in by_basis.items()), flush=True)


def cost(ds: Dataset) -> None:
    table, _ = snapshot_of(ds)
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
    print(f"4. partial_fit per 10k rows x {Z.shape[1]} features: {1000 * median(ours):.2f} ms "
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
    ap.add_argument("--v1-tree", type=Path, help="checkout of spec v1 to compare ARI with")
    ap.add_argument("--only", choices=("ari", "all", "drift"), default="all")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    main_ds = Dataset(a.users, a.events, a.seed)
    drift_ds = Dataset(a.users, a.drift_events or a.events, a.seed, a.drift_at)
    if a.only == "drift":
        drift(drift_ds, a.half_life, a.batch, a.passes)
        aging_control(main_ds)
        return
    bootstrap_ari(main_ds, a.v1_tree)
    bootstrap_ari(Dataset(a.check_users, a.check_events, a.check_seed), a.v1_tree)
    if a.only == "ari":
        return
    incremental_inertia(main_ds)
    drift(drift_ds, a.half_life, a.batch, a.passes)
    aging_control(main_ds)
    cost(main_ds)


if __name__ == "__main__":
    main()
