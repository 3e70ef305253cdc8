"""The SparkSession of the batch and streaming commands, built from settings.

Logs are quiet when all is well: the driver's log4j configuration is
``log4j2.properties`` beside this file (warnings and errors, without the ones Spark
prints on every normal run), adaptive query execution is off (streaming queries cannot
use it and say so on every start), and a local master binds to loopback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from segstream.config import Settings


def get_spark(settings: Settings, app_name: str = "segstream") -> SparkSession:
    """A local (or configured) session in UTC; the feature hours are UTC by contract."""
    # Python workers (the Kafka data source, the state function) run this interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if settings.spark_master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    log4j = Path(__file__).with_name("log4j2.properties").resolve()
    spark = (
        SparkSession.builder.master(settings.spark_master)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile=file:{log4j}")
        .config("spark.sql.adaptive.enabled", "false")
        .appName(app_name)
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .getOrCreate()
    )
    return spark
