"""`segstream features`: --as-of cuts the log and sets the clock; usage errors are clear."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from segstream.app.cli import app
from segstream.config import Settings
from segstream.core.contract import FEATURE_SPEC
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.batch import compute_features_pandas

runner = CliRunner()


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "2026-01-01T25:00", ""])
def test_a_malformed_as_of_is_a_usage_error_naming_the_option(tmp_path: Path, bad: str
                                                              ) -> None:
    log = tmp_path / "e.jsonl"
    log.write_text("{}\n")
    result = runner.invoke(app, ["features", "--from", str(log), "--out",
                                 str(tmp_path / "f.parquet"), "--as-of", bad])
    assert result.exit_code == 2
    assert "--as-of" in result.output and "ISO-8601" in result.output
    assert not (tmp_path / "f.parquet").exists()


def test_help_explains_as_of_and_the_clock() -> None:
    result = runner.invoke(app, ["features", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--as-of", "newest accepted event", "never the wall clock", "agg"):
        assert text in result.output, text


@pytest.mark.spark
@pytest.mark.slow
def test_features_as_of_counts_only_records_up_to_it(spark: Any, tmp_path: Path) -> None:
    log = generate(GeneratorConfig(users=15, events=600, seed=5, malformed_rate=0.02,
                                   duplicate_rate=0.02, late_rate=0.02))
    path, out = tmp_path / "events.jsonl.gz", tmp_path / "features.parquet"
    log.write_jsonl(path)
    middle = (log.start_ms + log.end_ms) // 2
    iso = pd.Timestamp(middle, unit="ms", tz="UTC").isoformat()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "segstream"), "features", "--from", str(path),
         "--as-of", iso, "--out", str(out)],
        env={**env, "SEGSTREAM_DATA_DIR": str(tmp_path / "data")}, capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = pd.read_parquet(out)
    assert list(got.columns) == ["user_id", *FEATURE_SPEC.names, "last_event_ms", "as_of_ms",
                                 "spec_version", "agg"]
    assert (got["as_of_ms"] == middle).all() and (got["last_event_ms"] <= middle).all()
    # the same as the library call, and not the whole log's features
    want = compute_features_pandas(spark, path, Settings(), as_of_ms=middle)
    pd.testing.assert_frame_equal(got, want)
    whole = compute_features_pandas(spark, path, Settings())
    assert whole["last_event_ms"].max() > middle
    assert not np.allclose(whole.set_index("user_id").loc[got["user_id"], "lifetime_sessions"],
                           got["lifetime_sessions"])


def test_stream_metrics_port_in_use_is_a_clear_error_before_spark_starts(tmp_path: Path
                                                                          ) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["stream", "--metrics-port", str(port)], env={
            "SEGSTREAM_DATA_DIR": str(tmp_path), "SEGSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "SEGSTREAM_REDIS_URL": "redis://127.0.0.1:1/0", "COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in result.output


def test_stream_help_names_the_metrics_port_and_its_bind_setting() -> None:
    result = runner.invoke(app, ["stream", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--metrics-port", "SEGSTREAM_METRICS_HOST"):
        assert text in result.output, text
