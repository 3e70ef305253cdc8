"""A real purchase log: CDNOW, 23,570 customers who first bought in the first quarter
of 1997, and every CD order they placed until the end of June 1998 (69,659 lines:
customer id, yyyymmdd date, number of CDs, amount in US dollars).

Source: Fader & Hardie's CDNOW data set, as shipped in the `lifetimes` wheel
(``lifetimes/datasets/CDNOW_master.txt``). It is fetched with pip into
``benchmarks/results/cdnow/`` (PyPI is reachable here; no dataset hub is), never a
dependency of segstream.

The log goes through the same path as any user's log: one ``purchase`` event per
line, validated, folded into aggregates, evaluated as of a time
(:func:`table`). ``python -m benchmarks.cdnow`` trains the segment model on it as of
the end of the log and prints the personas and RFM groups.

    .venv/bin/python -m benchmarks.cdnow [--as-of 1998-06-30] [--k 6]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

CACHE = Path(__file__).resolve().parent / "results" / "cdnow"
WHEEL = "lifetimes==0.11.3"
MEMBER = "lifetimes/datasets/CDNOW_master.txt"
END_MS = int(datetime(1998, 7, 1, tzinfo=UTC).timestamp() * 1000)


def master_file() -> Path:
    """The CDNOW master file, downloaded once."""
    out = CACHE / "CDNOW_master.txt"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL,
                    "-d", str(CACHE)], check=True)
    (wheel,) = CACHE.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        out.write_bytes(zf.read(MEMBER))
    return out


def orders() -> list[tuple[str, int, float]]:
    """(customer id, order time in epoch ms (midnight UTC of its day), amount)."""
    rows = []
    for line in master_file().read_text().splitlines()[1:]:  # a header line first
        cust, day, _cds, amount = line.split()
        ms = int(datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC).timestamp() * 1000)
        rows.append((cust, ms, float(amount)))
    return rows


def event_values(rows: list[tuple[str, int, float]]) -> list[bytes]:
    """One purchase event per order, in time order, as a producer would send it. The
    ts is the order's day; the event id keeps two orders of one day apart."""
    rows = sorted(rows, key=lambda r: r[1])
    return [orjson.dumps({"user_id": c, "ts": t, "event_type": "purchase", "amount": a,
                          "event_id": f"cdnow-{i}"}) for i, (c, t, a) in enumerate(rows)]


def aggregates(rows: list[tuple[str, int, float]]):  # type: ignore[no-untyped-def]
    """Every customer's aggregate record after the whole log (the stream's fold)."""
    from segstream.core.aggregates import FeatureParams
    from segstream.streaming.step import log_aggregates, valid_frame

    valid = valid_frame(event_values(rows), now_ms=END_MS)
    return log_aggregates(valid, watermark_ms=600_000, params=FeatureParams())


def table(as_of_ms: int = END_MS, rows: list[tuple[str, int, float]] | None = None):  # type: ignore[no-untyped-def]
    """Every customer with an order up to ``as_of_ms``, evaluated as of it."""
    from segstream.core.aggregates import FeatureParams
    from segstream.training.data import table_from_aggregates

    rows = [r for r in (rows or orders()) if r[1] <= as_of_ms]
    state = aggregates(rows)
    return table_from_aggregates(np.asarray(state.users, dtype=object), state.aggs, as_of_ms,
                                 FeatureParams(), "CDNOW")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--as-of", default="1998-06-30", help="evaluate as of this day (UTC)")
    ap.add_argument("--k", type=int, default=6, help="segments to fit")
    a = ap.parse_args()
    from rich.console import Console

    from segstream.app.train_commands import segment_table
    from segstream.core.times import parse_as_of
    from segstream.training.fit import fit_model
    from segstream.training.preprocess import clipped_shares

    t = table(parse_as_of(a.as_of) + 86_399_999)
    model = fit_model(t, a.k, seed=42)
    console = Console(width=160)
    console.print(segment_table(model, f"CDNOW as of {a.as_of}: {len(t):,} customers, k {a.k}"))
    for p in model.profiles:
        console.print(f"  {p['segment_id']}: {p['name']}: {p['description']}")
    groups = [g for *_, g in model.rfm(t.X)]
    console.print(f"RFM groups cover {len(groups):,} of {len(t):,} customers: "
                  + ", ".join(f"{g} {groups.count(g):,}" for g in sorted(set(groups))))
    console.print(f"largest share of customers at the clip on one feature: "
                  f"{clipped_shares(t.X, model.preprocessor).max():.1%}")


if __name__ == "__main__":
    main()
