"""`segstream train` then `segstream update --once` against the real broker and registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from segstream.config import Settings
from segstream.kafka import Producer
from segstream.online_store import encode_feature_message
from tests.training.synth import persona_features
from training.data import table_from_frame
from training.registry import Registry

pytestmark = [pytest.mark.kafka, pytest.mark.mlflow, pytest.mark.redis]


def produce_features(bootstrap: str, topic: str, df: object) -> int:
    producer = Producer(bootstrap)
    table = table_from_frame(df)  # type: ignore[arg-type]
    for uid, ts, x in zip(table.user_ids, table.last_event_ms, table.X, strict=True):
        producer.send(topic, encode_feature_message(uid, x, last_event_ms=int(ts),
                                                    updated_ms=int(ts)), key=uid.encode())
    producer.flush()
    return len(table)


def run(settings: Settings, *args: str) -> str:
    from segstream.cli import app

    env = {f"SEGSTREAM_{k.upper()}": str(v) for k, v in
           settings.model_dump(mode="json").items()
           if v is not None and not isinstance(v, list | dict)}
    env["COLUMNS"] = "200"
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0 or args[0] == "models", result.output
    return result.output


def test_train_update_once_registers_versions_with_metadata(
        settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
        kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = topic_factory("features")
    settings = settings_factory(topic_features=topic, update_publish_rows=2000,
                                update_batch_rows=1000, update_window_rows=3000)
    boot, _ = persona_features(3000, seed=11)
    path = tmp_path / "features.parquet"
    boot.to_parquet(path)
    out = run(settings, "train", "--from", str(path), "--k", "7")
    assert "gates: passed; champion" in out
    registry = Registry(settings)
    assert registry.champion_version() == "1"

    # the same behaviour streams in: incremental candidates, same ids, promoted
    same, _ = persona_features(4000, seed=12)
    produce_features(kafka_bootstrap, topic, same)
    out = run(settings, "update", "--once")
    versions = registry.versions()
    assert len(versions) >= 3, out
    newest = versions[0]
    assert newest.tags["kind"] == "incremental" and newest.gate == "passed"
    assert newest.tags["segment_ids"] == registry.show("1").tags["segment_ids"]
    assert newest.tags["parent"] and newest.tags["spec_version"] == "v1"
    assert registry.champion_version() == newest.version
    model = registry.load(newest.version)
    assert set(model.baseline["features"]) and model.info["rows_seen"] == 4000
    assert float(newest.tags["drift_psi_max"]) < settings.drift_psi_threshold
    offsets = json.loads((settings.data_dir / "checkpoints" / "training" / "offsets.json")
                         .read_text())
    assert sum(offsets.values()) == 4000

    # a second --once with nothing new reads nothing (resumes from its checkpoint)
    out = run(settings, "update", "--once")
    assert "read 0 messages" in out
    assert len(registry.versions()) == len(versions)

    # drift: users move between personas; the PSI trigger refits on the window
    drifted, _ = persona_features(4000, seed=13, after_drift=True)
    drifted["user_id"] = [f"d{i}" for i in range(len(drifted))]
    produce_features(kafka_bootstrap, topic, drifted)
    run(settings, "update", "--once")
    kinds = [v.tags["kind"] for v in registry.versions()]
    assert "refit" in kinds, kinds
    refit = next(v for v in registry.versions() if v.tags["kind"] == "refit")
    assert float(refit.tags["drift_psi_max"]) > settings.drift_psi_threshold


def test_cli_models_and_report(settings_factory: Callable[..., Settings],
                               tmp_path: Path) -> None:
    settings = settings_factory()
    df, _ = persona_features(2000, seed=21)
    path = tmp_path / "f.parquet"
    df.to_parquet(path)
    run(settings, "train", "--from", str(path), "--k", "auto")
    run(settings, "train", "--from", str(path), "--k", "7", "--no-promote")
    out = run(settings, "models", "list")
    assert "passed" in out and "segstream-segments" in out
    registry = Registry(settings)
    # a deliberately bad candidate: rejected by the gates, stays registered with its reason
    from training.fit import fit_model
    from training.pipeline import publish

    table = table_from_frame(df)
    bad = fit_model(table, 7, seed=1)
    bad.centroids[0] = 40.0
    result = publish(registry, bad, table.X, settings, champion=registry.load(), kind="bootstrap")
    assert not result.promoted and registry.champion_version() == "1"
    assert "is empty" in registry.show(result.version).tags["gate_reasons"]
    out = run(settings, "models", "promote", result.version)
    assert "only versions that passed" in out and registry.champion_version() == "1"
    run(settings, "models", "promote", "2")
    assert registry.champion_version() == "2"
    assert "rolled back" in run(settings, "models", "rollback")
    assert registry.champion_version() == "1"
    report = tmp_path / "report"
    run(settings, "report", "--out", str(report), "--from", str(path))
    html = (report / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # PCA, radar, parallel, sizes, k curves
    for title in ("PCA scatter", "Radar per segment", "Parallel coordinates",
                  "Segment sizes across versions", "k selection"):
        assert title in html
    evaluation = tmp_path / "eval.md"
    truth = tmp_path / "truth.csv"
    truth.write_text("user_id,persona,persona_after_drift\n" + "".join(
        f"{u},{p},{p}\n" for u, p in zip(df["user_id"], _labels(2000, 21), strict=True)))
    run(settings, "evaluate", "--from", str(path), "--truth", str(truth), "--out",
        str(evaluation), "--sample", "1500")
    text = evaluation.read_text()
    for algo in ("MiniBatchKMeans", "GaussianMixture", "HDBSCAN", "Ward"):
        assert algo in text
    kmeans_row = next(line for line in text.splitlines() if "| MiniBatchKMeans" in line)
    assert float(kmeans_row.split("|")[-2]) >= 0.95  # ARI column


def _labels(n: int, seed: int) -> np.ndarray:
    return persona_features(n, seed=seed)[1]
