"""Churn risk against its baselines, same rows, same time split: generated logs with
churners, and CDNOW's real purchase log; then the cost of scoring.

    .venv/bin/python -m benchmarks.churn [--only generated,cdnow,speed] [--users 2000]
                                         [--seeds 1,2,3] [--cdnow-horizons 181,91]

* **Generated**: ``segstream generate`` logs of ``--users`` users over 90 days (~3.3
  events per user and day) where 30 % of users stop at a random time
  (``churn_share=0.3``), through the stream's pure step into a Parquet history of one
  micro-batch per day. Label ``activity``, 14 days; snapshots every 7 days; the newest
  labelled time is the test period (``segstream churn train``'s defaults).
* **CDNOW**: 23,570 customers' CD orders, January 1997 to June 1998
  (``benchmarks/cdnow.py``), one ``purchase`` event per order known at the end of its
  day. Calibration period up to 1997-12-31, holdout the next 181 days (to 1998-06-30):
  "buys again in the holdout" is the label ``purchase`` with a 181-day horizon; the model
  trains on weekly snapshots whose 181-day window ended by 1997-12-31.
* **Baselines**, scored on the test rows: recency alone and the RFM quintile score
  (``training/churn_eval.py``), and BG/NBD (Fader, Hardie & Lee 2005) from the
  ``lifetimes`` library fitted on every customer's repeat days up to the test time:
  P(alive) and the expected number of transactions in the horizon (a customer who will
  not come back has few). ``lifetimes`` is no dependency of segstream: it runs in its own
  virtualenv, ``benchmarks/results/churn/lifetimes-venv`` (created on first use with
  pip), fed and read through CSV files, so ``.venv`` holds the product's packages only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import machine, median

RESULTS = Path(__file__).resolve().parent / "results" / "churn"
LIFETIMES = "lifetimes==0.11.3"
DAY_MS = 86_400_000

BGNBD_SCRIPT = r"""
import sys
import pandas as pd
from lifetimes import BetaGeoFitter
from lifetimes.utils import summary_data_from_transaction_data

src, out, end_ms, horizon = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
t = pd.read_csv(src, dtype={"user_id": str})
t["date"] = pd.to_datetime(t["ts"], unit="ms")
s = summary_data_from_transaction_data(t, "user_id", "date", freq="D",
                                       observation_period_end=pd.to_datetime(end_ms, unit="ms"))
for penalizer in (0.0, 0.001, 0.01):
    try:
        b = BetaGeoFitter(penalizer_coef=penalizer).fit(s["frequency"], s["recency"], s["T"])
        break
    except Exception as exc:  # no convergence: a little shrinkage
        print(f"BG/NBD with penalizer {penalizer}: {exc}", file=sys.stderr)
s["p_alive"] = b.conditional_probability_alive(s["frequency"], s["recency"], s["T"])
s["expected"] = b.conditional_expected_number_of_purchases_up_to_time(
    horizon, s["frequency"], s["recency"], s["T"])
s.to_csv(out)
print(f"{b} penalizer {penalizer}")
"""


def lifetimes_python() -> Path:
    """The benchmark-only virtualenv's Python with ``lifetimes`` (created once)."""
    venv = RESULTS / "lifetimes-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", LIFETIMES], check=True)
    return py


def bgnbd(transactions: pd.DataFrame, end_ms: int, horizon_days: float
          ) -> tuple[pd.DataFrame, str]:
    """BG/NBD per user of ``transactions`` (``user_id``, ``ts`` ms up to ``end_ms``):
    ``p_alive``, ``expected`` (transactions in the next ``horizon_days``), the fit."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "t.csv", Path(tmp) / "s.csv"
        transactions[["user_id", "ts"]].to_csv(src, index=False)
        run = subprocess.run([str(lifetimes_python()), "-c", BGNBD_SCRIPT, str(src), str(out),
                              str(end_ms), str(horizon_days)], check=True, capture_output=True,
                             text=True)
        fit = run.stdout.strip().splitlines()[-1]  # lifetimes prints a failed fit's state
        return pd.read_csv(out, dtype={"user_id": str}).set_index("user_id"), fit


def write_history(directory: Path, valid: pd.DataFrame, cuts_ms: list[int]) -> None:
    """The Parquet history the stream writes (``segstream.adapters.history``), the log
    cut into micro-batches at event times ``cuts_ms``."""
    from segstream.adapters import history
    from segstream.core.aggregates import FeatureParams, encode
    from segstream.streaming.step import GroupState, advance

    params, state = FeatureParams(), GroupState.empty()
    ts = valid["ts"].to_numpy(np.int64)
    bounds = [0, *np.searchsorted(ts, cuts_ms, side="right").tolist(), len(valid)]
    for batch_id, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if hi <= lo:
            continue
        step = advance(state, valid.iloc[lo:hi], watermark_ms=600_000, params=params)
        history.write_batch(directory, batch_id, pd.DataFrame({
            "user_id": list(step.users), "agg": encode(step.aggs, params),
            "events": step.aggs["events"], "last_event_ms": step.aggs["last_ms"],
            "updated_ms": batch_id, "batch_id": batch_id}))


def daily_cuts(valid: pd.DataFrame) -> list[int]:
    ts = valid["ts"].to_numpy(np.int64)
    first = int(ts.min()) // DAY_MS * DAY_MS
    return list(range(first + DAY_MS - 1, int(ts.max()) + DAY_MS, DAY_MS))


def run_case(name: str, valid: pd.DataFrame, label: str, horizon_days: float,
             every_days: float) -> dict[str, Any]:
    """History -> churn model and baselines on the test period; a result row."""
    from segstream.config import Settings
    from segstream.core.aggregates import FeatureParams
    from segstream.training import churn_eval
    from segstream.training.churn_data import train_test
    from segstream.training.churn_fit import fit_churn

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        hist = Path(tmp) / "history"
        write_history(hist, valid, daily_cuts(valid))
        t_hist = time.perf_counter() - t0
        train, test = train_test(hist, FeatureParams(), label, horizon_days, every_days, 1)
    t_rows = time.perf_counter() - t0 - t_hist
    settings = Settings()
    model = fit_churn(train, calibration=settings.churn_calibration,
                      band_edges=settings.churn_band_edges, seed=settings.random_seed)
    t_fit = time.perf_counter() - t0 - t_hist - t_rows
    ev = churn_eval.evaluate(model, test, train.churn_rate)
    (T,) = test.times
    ts = valid["ts"].to_numpy(np.int64)
    seen = valid[ts <= T]
    if label == "purchase":
        seen = seen[seen["event_type"] == "purchase"]
    fit_bg, bg_fit = bgnbd(seen, T, horizon_days)
    y = test.y.astype(np.int64)
    bg = fit_bg.reindex(test.user_ids)  # a user never seen buying has no BG/NBD row
    for key, col in (("bgnbd_expected", "expected"), ("bgnbd_p_alive", "p_alive")):
        score = -bg[col].to_numpy(np.float64)
        ev.baselines[key] = churn_eval.ranking(y, np.where(np.isnan(score), np.inf, score))
    row = {"case": name, "label": label, "horizon_days": horizon_days,
           "train_rows": len(train), "train_times": len(train.times),
           "train_churn_rate": train.churn_rate, "test_rows": len(test),
           "test_churn_rate": test.churn_rate, "test_time_ms": T,
           "model": ev.metrics, "baselines": ev.baselines, "calibration": ev.calibration,
           "bands": ev.bands, "bgnbd_fit": bg_fit,
           "seconds": {"history": t_hist, "examples": t_rows, "fit": t_fit}}
    print_row(row)
    return row


def print_row(row: dict[str, Any]) -> None:
    m, b = row["model"], row["baselines"]
    print(f"\n## {row['case']}: label {row['label']}, {row['horizon_days']:g} days; train "
          f"{row['train_rows']:,} rows ({row['train_times']} snapshots, churn "
          f"{row['train_churn_rate']:.3f}), test {row['test_rows']:,} rows (churn "
          f"{row['test_churn_rate']:.3f}); {row['bgnbd_fit']}")
    print("| score | ROC AUC | PR AUC | Brier |\n|---|---|---|---|")
    print(f"| churn model | **{m['roc_auc']:.4f}** | {m['pr_auc']:.4f} | {m['brier']:.4f} |")
    for name, v in b.items():
        print(f"| {name} | {v.get('roc_auc', float('nan')):.4f} | "
              f"{v.get('pr_auc', float('nan')):.4f} | {v.get('brier', float('nan')):.4f} |")
    print("calibration: " + "; ".join(f"{c['from']:.1f}-{c['to']:.1f}: {c['rows']} rows, "
                                      f"{c['predicted']:.3f} vs {c['observed']:.3f}"
                                      for c in row["calibration"]))
    print("bands: " + "; ".join(f"{x['band']} {x['share']:.1%} churn "
                                + ("-" if x["observed"] is None else f"{x['observed']:.3f}")
                                for x in row["bands"]))
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in row["seconds"].items()), flush=True)


def generated(users: int, seed: int) -> tuple[dict[str, Any], pd.DataFrame]:
    from segstream.sources.generator import GeneratorConfig, generate
    from segstream.streaming.step import valid_frame

    log = generate(GeneratorConfig(users=users, events=users * 300, days=90.0,
                                   churn_share=0.3, seed=seed))
    valid = valid_frame(log.values, now_ms=log.end_ms)
    return run_case(f"generated, {users:,} users, seed {seed}", valid, "activity", 14.0,
                    7.0), valid


def cdnow(horizon_days: float) -> dict[str, Any]:
    from benchmarks.cdnow import END_MS, event_values, orders
    from segstream.streaming.step import valid_frame

    rows = [(c, t + DAY_MS - 1, a) for c, t, a in orders()]  # known at the end of its day
    valid = valid_frame(event_values(rows), now_ms=END_MS)
    return run_case("CDNOW", valid, "purchase", horizon_days, 7.0)


def speed(users: int, seed: int) -> dict[str, float]:
    """Scoring cost of the fitted model: the numpy walk against scikit-learn."""
    from threadpoolctl import threadpool_limits

    from segstream.sources.generator import GeneratorConfig, generate
    from segstream.streaming.step import valid_frame
    from segstream.training.churn_data import train_test
    from segstream.training.churn_fit import fit_estimator, to_artefact

    log = generate(GeneratorConfig(users=users, events=users * 300, days=90.0,
                                   churn_share=0.3, seed=seed))
    valid = valid_frame(log.values, now_ms=log.end_ms)
    from segstream.core.aggregates import FeatureParams

    with tempfile.TemporaryDirectory() as tmp:
        write_history(Path(tmp) / "h", valid, daily_cuts(valid))
        train, test = train_test(Path(tmp) / "h", FeatureParams(), "activity", 14.0, 7.0, 1)
    from segstream.config import Settings

    settings = Settings()
    est = fit_estimator(train, calibration=settings.churn_calibration)
    model = to_artefact(est, train, calibration=settings.churn_calibration,
                        band_edges=settings.churn_band_edges)
    one, batch = test.X[:1], test.X[:1000]

    def per_call(f: Any, n: int) -> float:
        for _ in range(3):
            f()
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                f()
            runs.append((time.perf_counter() - t) / n * 1e6)
        return median(runs)

    out = {"numpy risk, 1 row (µs)": per_call(lambda: model.risk(one), 400),
           "numpy risk + band + 3 reasons, 1 row (µs)": per_call(lambda: model.score(one), 200),
           "numpy risk, 1,000 rows (µs)": per_call(lambda: model.risk(batch), 20),
           "numpy risk + band + 3 reasons, 1,000 rows (µs)":
               per_call(lambda: model.score(batch), 5),
           "sklearn CalibratedClassifierCV.predict_proba, 1 row (µs)":
               per_call(lambda: est.predict_proba(one), 20)}
    with threadpool_limits(1, user_api="openmp"):
        out["sklearn predict_proba, 1 row, 1 OpenMP thread (µs)"] = per_call(
            lambda: est.predict_proba(one), 100)
    out["sklearn predict_proba, 1,000 rows (µs)"] = per_call(lambda: est.predict_proba(batch), 5)
    print(f"\n## scoring ({len(model.trees.roots)} trees, depth {model.trees.depth})")
    for k, v in out.items():
        print(f"| {k} | {v:,.1f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="generated,cdnow,speed")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--cdnow-horizons", default="181")
    a = ap.parse_args()
    only = set(a.only.split(","))
    print(f"# churn benchmark on {machine()}")
    results: dict[str, Any] = {"machine": machine(), "generated": [], "cdnow": []}
    if "generated" in only:
        for seed in (int(s) for s in a.seeds.split(",")):
            results["generated"].append(generated(a.users, seed)[0])
    if "cdnow" in only:
        for h in (float(x) for x in a.cdnow_horizons.split(",")):
            results["cdnow"].append(cdnow(h))
    if "speed" in only:
        results["speed"] = speed(a.users, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "results.json"
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
