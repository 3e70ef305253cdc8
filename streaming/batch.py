"""Batch features from an event log: the same validator, arrival rules and feature
transform as the streaming job (read -> pure transform -> write).

Usage (needs a SparkSession; tests/streaming runs it for real)::

    df = compute_features(spark, Path("events.jsonl.gz"), Settings())
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segstream.config import Settings
from streaming.durations import duration_ms
from streaming.features import EVENT_COLUMNS, user_features
from streaming.state import FEATURES_DDL, accept_group, validated_groups, with_bucket
from streaming.validate import EVENTS_DDL

if TYPE_CHECKING:
    import pandas as pd


def read_event_log(spark: SparkSession, path: Path) -> DataFrame:
    """JSON lines (``.gz`` ok) as source records: ``value`` (the line's original bytes),
    ``offset`` (line order, the arrival order), ``key`` null, ``topic`` the file name,
    ``partition`` 0. Empty lines are skipped, as ``generator.iter_jsonl`` does."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; write one with `segstream generate --out {path}`")
    lines = spark.read.option("lineSep", "\n").text(str(path))
    return (lines.select(F.col("value").cast("binary").alias("value"))
            .where(F.octet_length("value") > 0)
            .select(F.lit(None).cast("binary").alias("key"), "value",
                    F.lit(path.name).alias("topic"), F.lit(0).alias("partition"),
                    F.monotonically_increasing_id().alias("offset")))


def accepted_events(records: DataFrame, settings: Settings) -> DataFrame:
    """Valid, non-late, first-seen events (``EVENT_COLUMNS`` + ``bucket``) of source
    records whose ``(partition, offset)`` is the arrival order."""
    grouped = validated_groups(records, settings.stream_state_buckets)
    watermark_ms = duration_ms(settings.stream_watermark)

    def accept(records: pd.DataFrame) -> pd.DataFrame:
        return accept_group(records, watermark_ms=watermark_ms)

    accepted = grouped.applyInPandas(accept, EVENTS_DDL)
    return with_bucket(accepted, settings.stream_state_buckets)


def features_of(accepted: DataFrame, settings: Settings) -> DataFrame:
    """Per-user features of accepted events (one ``user_features`` call per group)."""
    window_days, gap = settings.feature_window_days, settings.session_gap_minutes

    def features(events: pd.DataFrame) -> pd.DataFrame:
        return user_features(events[list(EVENT_COLUMNS)], window_days=window_days,
                             session_gap_minutes=gap)

    return accepted.groupBy("bucket").applyInPandas(features, FEATURES_DDL)


def compute_features(spark: SparkSession, path: Path, settings: Settings | None = None
                     ) -> DataFrame:
    """Per-user features of the event log at ``path`` (columns as in the Parquet output)."""
    settings = settings or Settings()
    return features_of(accepted_events(read_event_log(spark, Path(path)), settings), settings)


def compute_features_pandas(spark: SparkSession, path: Path, settings: Settings | None = None
                            ) -> pd.DataFrame:
    """:func:`compute_features` collected to pandas, sorted by ``user_id``."""
    return (compute_features(spark, path, settings).toPandas()
            .sort_values("user_id").reset_index(drop=True))


def write_features(features: DataFrame, out: Path) -> int:
    """Write one Parquet file at ``out`` (via pandas: a single file, not a Spark folder)."""
    pdf = features.toPandas().sort_values("user_id").reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.to_parquet(out, index=False)
    return len(pdf)
