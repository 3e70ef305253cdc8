"""``segstream features`` (batch) and ``segstream stream`` (the streaming job)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("features")(features)
    app.command("stream")(stream)


def stream(
    available_now: Annotated[bool, typer.Option(
        "--available-now", help="Process everything on the topic now, then exit.")] = False,
    trigger: Annotated[str | None, typer.Option(
        help="Micro-batch interval, e.g. '1s', '500 ms' (default: SEGSTREAM_STREAM_TRIGGER).")
    ] = None,
    source: Annotated[str | None, typer.Option(
        help="python: the Kafka reader on PySpark's Data Source API; kafka: Spark's JVM "
        "connector (needs the spark-sql-kafka jar). Default: SEGSTREAM_STREAM_SOURCE.")] = None,
) -> None:
    """Run the streaming job: `events` -> features in Redis, `features` topic, Parquet.

    Invalid and late records go to `events.dlq` with their reason. Progress is kept in
    the checkpoint (SEGSTREAM_STREAM_CHECKPOINT_DIR): a restart resumes where it stopped.
    SIGTERM/Ctrl-C finishes the batch in flight, then stops. Example:

        segstream stack up && segstream generate --topic events
        segstream stream --available-now
    """
    from segstream.cli import fail, load_settings
    from segstream.kafka import KafkaUnavailable
    from segstream.stack import StackError, endpoints

    settings = load_settings()
    chosen = source or settings.stream_source
    if chosen not in ("python", "kafka"):
        raise fail(f"--source must be python or kafka, got {chosen!r}", 2)
    try:
        ep = endpoints(settings)
    except (StackError, KafkaUnavailable) as exc:
        raise fail(str(exc)) from exc
    from streaming.durations import duration_ms
    from streaming.job import SourceUnavailable, run
    from streaming.session import get_spark

    if trigger is not None:
        try:
            trigger = f"{duration_ms(trigger)} milliseconds"
        except ValueError as exc:
            raise fail(str(exc), 2) from exc
    spark = get_spark(settings, "segstream-stream")
    try:
        run(spark, settings, bootstrap=ep.kafka_bootstrap, redis_url=ep.redis_url,
            source=chosen, trigger=trigger, available_now=available_now)
    except SourceUnavailable as exc:
        raise fail(str(exc), 2) from exc
    finally:
        spark.stop()


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
