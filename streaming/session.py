"""The SparkSession of the batch and streaming commands, built from settings."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from segstream.config import Settings


def get_spark(settings: Settings, app_name: str = "segstream") -> SparkSession:
    """A local (or configured) session in UTC; the feature hours are UTC by contract."""
    # Python workers (the Kafka data source, the state function) run this interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(settings.spark_master)
        .config("spark.pyspark.python", sys.executable)
        .appName(app_name)
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    # after stop() the state store's maintenance thread logs a stack trace at WARN
    # ("SparkEnv not active"): harmless, and the last thing every run printed
    jvm = spark.sparkContext._jvm
    if jvm is not None:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
            "org.apache.spark.sql.execution.streaming.state.StateStore",
            jvm.org.apache.logging.log4j.Level.ERROR)
    return spark
