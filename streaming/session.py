"""The SparkSession of the batch and streaming commands, built from settings."""

from __future__ import annotations

from pyspark.sql import SparkSession

from segstream.config import Settings


def get_spark(settings: Settings, app_name: str = "segstream") -> SparkSession:
    """A local (or configured) session in UTC; the feature hours are UTC by contract."""
    spark = (
        SparkSession.builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark
