"""Batch features from an event log: the same parse, arrival rules and feature
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
from streaming.arrivals import classify_arrivals
from streaming.durations import duration_ms
from streaming.features import compute_features as feature_transform
from streaming.parse import parse_records

if TYPE_CHECKING:
    import pandas as pd


def read_event_log(spark: SparkSession, path: Path) -> DataFrame:
    """JSON lines (``.gz`` ok) as ``value`` (the line's original bytes) and ``seq`` (line order).

    Empty lines are skipped, as ``generator.iter_jsonl`` does.
    """
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; write one with `segstream generate --out {path}`")
    lines = spark.read.option("lineSep", "\n").text(str(path))
    return (lines.select(F.col("value").cast("binary").alias("value"))
            .withColumn("seq", F.monotonically_increasing_id())
            .where(F.octet_length("value") > 0))


def accepted_events(records: DataFrame, settings: Settings) -> DataFrame:
    """Valid, non-late, first-seen events of a log with a ``seq`` arrival order."""
    parsed = parse_records(records).where(F.col("reason").isNull())
    arrivals = classify_arrivals(parsed, watermark_ms=duration_ms(settings.stream_watermark))
    return arrivals.where(F.col("arrival") == "accepted")


def features_from_records(records: DataFrame, settings: Settings) -> DataFrame:
    return feature_transform(accepted_events(records, settings),
                             window_days=settings.feature_window_days,
                             session_gap_minutes=settings.session_gap_minutes)


def compute_features(spark: SparkSession, path: Path, settings: Settings | None = None
                     ) -> DataFrame:
    """Per-user features of the event log at ``path`` (columns as in the Parquet output)."""
    return features_from_records(read_event_log(spark, Path(path)), settings or Settings())


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
