"""``segstream features`` (batch) and ``segstream stream`` (the streaming job)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("features")(features)


def features(
    from_: Annotated[Path, typer.Option("--from", help="Event log: JSON lines as written by "
                                        "`segstream generate --out` (.gz ok).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write: user_id, every feature "
                                      "of the spec (double), last_event_ms, spec_version.")],
) -> None:
    """Compute per-user features from an event log in batch (same definition as `stream`).

    Example:

        segstream generate --users 200 --events 20000 --out events.jsonl.gz
        segstream features --from events.jsonl.gz --out features.parquet
    """
    from segstream.cli import console, fail, load_settings

    settings = load_settings()
    if not from_.is_file():
        raise fail(f"{from_} is not a file; write an event log with "
                   f"`segstream generate --out {from_}`", 2)
    from streaming.batch import compute_features, write_features
    from streaming.session import get_spark

    t0 = time.monotonic()
    spark = get_spark(settings, "segstream-features")
    try:
        n = write_features(compute_features(spark, from_, settings), out)
    finally:
        spark.stop()
    console.print(f"wrote features of {n:,} users to {out} in {time.monotonic() - t0:.1f} s")
