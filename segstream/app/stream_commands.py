"""``segstream features`` (batch) and ``segstream stream`` (the streaming job)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from segstream.core.times import format_time


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
    metrics_port: Annotated[int, typer.Option(
        "--metrics-port", min=0, max=65535,
        help="Serve the job's Prometheus metrics on this port, bound to "
        "SEGSTREAM_METRICS_HOST (0: off).")] = 0,
) -> None:
    """Run the streaming job: `events` -> features in Redis, `features` topic, Parquet.

    Invalid and late records go to `events.dlq` with their reason. Progress is kept in
    the checkpoint (SEGSTREAM_STREAM_CHECKPOINT_DIR): a restart resumes where it stopped.
    SIGTERM/Ctrl-C finishes the batch in flight, then stops. With --metrics-port the
    driver serves /metrics (streaming/metrics.py: rows, batch durations, lag per
    partition, dead letters by reason). Example:

        segstream stack up && segstream generate --topic events
        segstream stream --available-now
        segstream stream --metrics-port 9103
    """
    from segstream.adapters.endpoints import StackError, endpoints
    from segstream.adapters.kafka import KafkaUnavailable
    from segstream.app.console import fail, load_settings

    settings = load_settings()
    chosen = source or settings.stream_source
    if chosen not in ("python", "kafka"):
        raise fail(f"--source must be python or kafka, got {chosen!r}", 2)
    try:
        ep = endpoints(settings)
    except (StackError, KafkaUnavailable) as exc:
        raise fail(str(exc)) from exc
    from segstream.streaming.durations import duration_ms
    from segstream.streaming.job import SourceUnavailable, StreamFailed, run
    from segstream.streaming.session import get_spark

    if trigger is not None:
        try:
            trigger = f"{duration_ms(trigger)} milliseconds"
        except ValueError as exc:
            raise fail(str(exc), 2) from exc
    from segstream.app.console import serve_metrics_or_fail
    from segstream.streaming.metrics import REGISTRY

    serve_metrics_or_fail(metrics_port, settings.metrics_host, REGISTRY)  # before Spark
    spark = get_spark(settings, "segstream-stream")
    try:
        run(spark, settings, bootstrap=ep.kafka_bootstrap, redis_url=ep.redis_url,
            source=chosen, trigger=trigger, available_now=available_now)
    except SourceUnavailable as exc:
        raise fail(str(exc), 2) from exc
    except StreamFailed as exc:
        raise fail(str(exc)) from exc
    finally:
        spark.stop()


def features(
    from_: Annotated[Path, typer.Option("--from", help="Event log: JSON lines as written by "
                                        "`segstream generate --out` (.gz ok).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write: user_id, every feature "
                                      "of the spec (double, spec order), last_event_ms, "
                                      "as_of_ms, spec_version, agg (the aggregate record).")],
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Evaluate as of this time (ISO-8601, no zone: UTC; or epoch "
        "s/ms/µs). Only records with ts <= as_of count. Default: the log's newest "
        "accepted event time.")] = None,
) -> None:
    """Compute per-user features from an event log in batch (same code as `stream`).

    The log's line order is its arrival order. The validator, the late and
    duplicate rules and the aggregate fold run as in the stream; then every
    user's aggregates are evaluated as of one time. The clock is the log's own
    (its newest accepted event, or --as-of), never the wall clock, so the
    output depends only on the log. Example:

        segstream generate --users 200 --events 20000 --out events.jsonl.gz
        segstream features --from events.jsonl.gz --out features.parquet
        segstream features --from events.jsonl.gz --as-of 2026-01-15 --out f.parquet
    """
    from segstream.app.console import as_of_option, console, fail, load_settings

    settings = load_settings()
    as_of_ms = as_of_option(as_of)
    if not from_.is_file():
        raise fail(f"{from_} is not a file; write an event log with "
                   f"`segstream generate --out {from_}`", 2)
    from segstream.streaming.batch import compute_features_pandas, write_features
    from segstream.streaming.session import get_spark

    t0 = time.monotonic()
    spark = get_spark(settings, "segstream-features")
    try:
        pdf = compute_features_pandas(spark, from_, settings, as_of_ms)
    finally:
        spark.stop()
    n = write_features(pdf, out)
    when = int(pdf["as_of_ms"].iloc[0]) if n else as_of_ms
    iso = "-" if when is None else format_time(when, "seconds")
    console.print(f"wrote features of {n:,} users as of {iso} to {out} in "
                  f"{time.monotonic() - t0:.1f} s")
