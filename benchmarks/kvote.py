"""``--k auto`` against known structure (docs/training.md, *Choosing k*).

    .venv/bin/python -m benchmarks.kvote [--users 2000 --events 80000 --seeds 1,2,3,4,5]
        [--k-min 3 --k-max 12] [--skip-cdnow]

Data: ``segstream generate`` logs of the seven personas (40 events per user by
default), cached and turned into every user's features as of the log's newest event
by the same code as ``benchmarks.training`` (``Dataset``, ``snapshot_of``: the stream's
pure step). Per seed: the k that ``segstream.training.selection.select_k`` picks (seed
42, the ``random_seed`` setting, over the ``train_k_min..train_k_max`` default range),
the stability of the pick and of the next k, what each classical criterion would have
voted, the vote's time, and the ARI against the persona truth of ``fit_model`` at the
pick and at the fixed k = 7 (seed 42, the fit ``segstream train`` runs).

Then the CDNOW purchase log (``benchmarks.cdnow``: 23,570 customers, purchases only),
where there is no truth: the pick, every k's stability and the picked segments' sizes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score

from benchmarks.common import machine
from benchmarks.training import Dataset, meta_of, snapshot_of
from segstream.training.fit import fit_model
from segstream.training.selection import KSelection, select_k

SEED = 42  # Settings.random_seed: the vote's and the fit's seed in `segstream train`
PERSONAS = 7


def timed_vote(X: np.ndarray, ks: range) -> tuple[KSelection, float]:
    t0 = time.perf_counter()
    sel = select_k(X, ks, seed=SEED)
    return sel, time.perf_counter() - t0


def stability_of(sel: KSelection, k: int) -> str:
    rows = [r for r in sel.rows if int(r["k"]) == k]
    return f"{rows[0]['stability']:.3f}" if rows else "-"


def generated(users: int, events: int, seeds: list[int], ks: range) -> None:
    print(f"1. {PERSONAS} personas, {users:,} users x {events:,} events "
          f"({events // users} per user), k {ks.start}..{ks.stop - 1}, vote and fit seed {SEED}")
    print("   seed | users | k picked | ARI at pick | ARI at k=7 | stability pick / next "
          "| silhouette, CH, DB, elbow vote | vote s")
    picked_ok = 0
    for seed in seeds:
        ds = Dataset(users, events, seed)
        table, truth = snapshot_of(ds)
        sel, seconds = timed_vote(table.X, ks)
        k = sel.best_k
        at = {kk: adjusted_rand_score(truth, fit_model(table, kk, seed=SEED).assign(
            table.X).segment_ids) for kk in {k, PERSONAS}}
        v = sel.votes
        picked_ok += k == PERSONAS or at[k] >= 0.9
        print(f"   {seed} | {len(table):,} | {k} ({sel.rule}) | {at[k]:.3f} | "
              f"{at[PERSONAS]:.3f} | {stability_of(sel, k)} / {stability_of(sel, k + 1)} | "
              f"{v['silhouette']}, {v['calinski_harabasz']}, {v['davies_bouldin']}, "
              f"{v['elbow']} | {seconds:.1f}  (log sha256 {str(meta_of(ds)['sha256'])[:12]})",
              flush=True)
    print(f"   picked {PERSONAS} or a partition with ARI >= 0.9: {picked_ok} of {len(seeds)}")


def cdnow(ks: range) -> None:
    from benchmarks.cdnow import table

    t = table()
    sel, seconds = timed_vote(t.X, ks)
    print(f"2. CDNOW as of 1998-06-30: {len(t):,} customers (vote on "
          f"{int(sel.rows[0]['rows']):,} sampled), k {ks.start}..{ks.stop - 1}: picked "
          f"{sel.best_k} ({sel.rule}) in {seconds:.1f} s; classical votes {sel.votes}")
    print("   stability per k: " + ", ".join(
        f"{int(r['k'])}: {r['stability']:.3f}" for r in sel.rows))
    model = fit_model(t, sel.best_k, seed=SEED)
    print("   segments: " + "; ".join(
        f"{name} {p['share']:.0%}" for p, name in zip(model.profiles, model.personas,
                                                      strict=True)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--events", type=int, default=80_000)
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--k-min", type=int, default=3)
    ap.add_argument("--k-max", type=int, default=12)
    ap.add_argument("--skip-cdnow", action="store_true")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    ks = range(a.k_min, a.k_max + 1)
    generated(a.users, a.events, [int(s) for s in a.seeds.split(",")], ks)
    if not a.skip_cdnow:
        cdnow(ks)


if __name__ == "__main__":
    main()
