"""`segstream train` then `segstream update --once` against the real broker and registry,
on real features: aggregate records of generated logs on the `features` topic."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from segstream.adapters.kafka import Producer
from segstream.adapters.registry import Registry
from segstream.config import Settings
from segstream.core.contract import FEATURE_SPEC
from segstream.training.data import read_table
from tests.support.real_logs import PARAMS, RealLog, features_file, real_log, write_history

pytestmark = [pytest.mark.kafka, pytest.mark.mlflow, pytest.mark.redis]


def produce(bootstrap: str, topic: str, log: RealLog, prefix: str = "") -> int:
    """Every user's record at the end of ``log``, as the streaming job publishes it."""
    from segstream.adapters.online_store import HEADER_UPDATED
    from segstream.core.aggregates import encode

    producer = Producer(bootstrap)
    users = [prefix + str(u) for u in log.state.users]
    for user, blob in zip(users, encode(log.state.aggs, PARAMS), strict=True):
        producer.send(topic, blob, key=user.encode(), headers={HEADER_UPDATED: b"1"})
    producer.flush()
    return len(users)


def invoke(settings: Settings, *args: str, **env: str) -> Result:
    from segstream.app.cli import app

    base = {f"SEGSTREAM_{k.upper()}": str(v) for k, v in
            settings.model_dump(mode="json").items()
            if v is not None and not isinstance(v, list | dict)}
    return CliRunner().invoke(app, list(args), env={**base, "COLUMNS": "200", **env})


def run(settings: Settings, *args: str) -> str:
    result = invoke(settings, *args)
    assert result.exit_code == 0 or args[0] == "models", result.output
    return result.output


def test_train_update_once_registers_versions_with_metadata(
        settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
        kafka_bootstrap: str, tmp_path: Path, log_a: RealLog) -> None:
    topic = topic_factory("features")
    settings = settings_factory(topic_features=topic, update_publish_rows=300,
                                update_batch_rows=150, update_window_rows=600)
    path = tmp_path / "features.parquet"
    features_file(log_a.state.users, log_a.state.aggs, None).to_parquet(path, index=False)
    out = run(settings, "train", "--from", str(path), "--k", "7")
    assert "gates: passed; champion" in out
    assert f"feature params {PARAMS.fingerprint:08x}" in out
    registry = Registry(settings)
    assert registry.champion_version() == "1"
    assert registry.show("1").tags["feature_params"] == f"{PARAMS.fingerprint:08x}"
    assert registry.show("1").tags["as_of_ms"] == str(log_a.end_ms)

    # the same behaviour streams in (another sample): incremental candidates, same ids
    same = real_log(600, 60_000, seed=2)
    n = produce(kafka_bootstrap, topic, same, prefix="s")
    out = run(settings, "update", "--once")
    versions = registry.versions()
    assert len(versions) >= 3, out
    newest = versions[0]
    assert newest.tags["kind"] == "incremental" and newest.gate == "passed"
    # the same segments (a refit on the way may order the centroid rows differently)
    assert (sorted(registry.load(newest.version).segment_ids)
            == sorted(registry.load("1").segment_ids))
    assert newest.tags["parent"] and newest.tags["spec_version"] == FEATURE_SPEC.version
    assert newest.tags["feature_params"] == f"{PARAMS.fingerprint:08x}"
    assert newest.tags["as_of_ms"] == str(same.end_ms)  # the stream time
    assert registry.champion_version() == newest.version
    model = registry.load(newest.version)
    assert set(model.baseline["features"]) and model.info["rows_seen"] == n
    assert model.info["feature_params"] == PARAMS.describe()
    assert float(newest.tags["drift_psi_max"]) < settings.drift_psi_threshold
    offsets = json.loads((settings.data_dir / "checkpoints" / "training" / "offsets.json")
                         .read_text())
    assert sum(offsets.values()) == n

    # a second --once with nothing new reads nothing (resumes from its checkpoint)
    out = run(settings, "update", "--once")
    assert "read 0 messages" in out
    assert len(registry.versions()) == len(versions)

    # drift: half the power users decay, browsers hunt bargains, more mobile; the
    # PSI trigger refits on the window
    drifted = real_log(600, 60_000, seed=3, drift_at=0.5)
    produce(kafka_bootstrap, topic, drifted, prefix="d")
    run(settings, "update", "--once")
    kinds = [v.tags["kind"] for v in registry.versions()]
    assert "refit" in kinds, kinds
    refit = next(v for v in registry.versions() if v.tags["kind"] == "refit")
    assert float(refit.tags["drift_psi_max"]) > settings.drift_psi_threshold

    # the topic is a history too: a bootstrap on it, as of its stream time
    # (registered whether or not the gates pass it: exit 0, or 3 when they keep the champion)
    done = invoke(settings, "train", "--from", "features-topic", "--k", "7", "--no-promote")
    out = done.output
    assert done.exit_code in (0, 3), out
    users = len(same.state.users) + len(drifted.state.users)
    assert f"{users:,} users as of 2026-10-3" in out, out
    assert registry.show(registry.versions()[0].version).tags["as_of_ms"] == str(
        max(same.end_ms, drifted.end_ms))


def test_train_as_of_and_params_are_checked(
        settings_factory: Callable[..., Settings], tmp_path: Path, log_a: RealLog) -> None:
    settings = settings_factory()
    day = 86_400_000
    history = tmp_path / "history"
    start = int(log_a.valid["ts"].min()) // day * day
    write_history(history, log_a.valid, list(range(start + day - 1, log_a.end_ms, day)))
    T = start + 20 * day - 1  # 2026-10-20T23:59:59.999Z
    out = run(settings, "train", "--from", str(history), "--k", "6",
              "--as-of", "2026-10-20T23:59:59.999Z")
    assert "as of 2026-10-20T23:59:59+00:00" in out and "gates: passed" in out
    model = Registry(settings).load("champion")
    assert model.info["as_of_ms"] == T
    assert model.info["rows"] == len(read_table(history, PARAMS, T)) < len(log_a.state.users)

    path = tmp_path / "features.parquet"
    features_file(log_a.state.users, log_a.state.aggs, None).to_parquet(path, index=False)
    bad = invoke(settings, "train", "--from", str(path), "--as-of", "2026-10-20")
    assert bad.exit_code == 1 and "not the requested" in bad.output
    bad = invoke(settings, "train", "--from", str(history), "--as-of", "19970101")
    assert bad.exit_code == 2 and "ambiguous" in bad.output
    # features computed with other params: refused, both fingerprints named
    other = invoke(settings, "train", "--from", str(path),
                   SEGSTREAM_FEATURE_HALF_LIFE_SHORT_DAYS="3")
    assert other.exit_code == 1 and f"{PARAMS.fingerprint:08x}" in other.output
    # a champion of other params cannot be updated by this process
    other = invoke(settings, "update", "--once", SEGSTREAM_FEATURE_HALF_LIFE_SHORT_DAYS="3")
    assert other.exit_code == 1 and "was fitted on feature params" in other.output


def test_cli_models_and_report(settings_factory: Callable[..., Settings],
                               tmp_path: Path, log_a: RealLog) -> None:
    settings = settings_factory()
    path = tmp_path / "f.parquet"
    features_file(log_a.state.users, log_a.state.aggs, None).to_parquet(path, index=False)
    run(settings, "train", "--from", str(path), "--k", "auto")
    k = Registry(settings).load().k  # a second version that passes the gates, not promoted
    run(settings, "train", "--from", str(path), "--k", str(k), "--no-promote")
    out = run(settings, "models", "list")
    assert "passed" in out and "segstream-segments" in out
    registry = Registry(settings)
    # the champion alias shows in the list (MLflow search results carry no aliases)
    assert [v.aliases for v in registry.versions()] == [(), ("champion",)]
    assert "champion" in out
    # a deliberately bad candidate: rejected by the gates, stays registered with its reason
    from segstream.training.fit import fit_model
    from segstream.training.pipeline import publish

    table = read_table(path, PARAMS)
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
    # radars, R x F, PCA, shares across versions, k curves: real users, no simulated points
    assert html.count("data:image/png;base64,") >= 5
    for title in ("R x F grid", "PCA of", "k selection"):
        assert title in html, title
    evaluation = tmp_path / "eval.md"
    truth = tmp_path / "truth.csv"
    log_a.log.write_truth(truth)
    run(settings, "evaluate", "--from", str(path), "--truth", str(truth), "--out",
        str(evaluation), "--sample", "600")
    text = evaluation.read_text()
    for algo in ("MiniBatchKMeans", "GaussianMixture", "HDBSCAN", "Ward"):
        assert algo in text
    rows = [line.split("|") for line in text.splitlines() if "| MiniBatchKMeans" in line]
    ari = {cells[1].strip(): float(cells[-2]) for cells in rows}  # scaling -> ARI column
    assert ari["within-segment"] >= 0.9 and ari["within-segment"] > ari["robust"], text
    assert np.isfinite(list(ari.values())).all()


def test_a_stray_message_on_the_features_topic_is_skipped_not_a_stop(
        settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
        kafka_bootstrap: str, tmp_path: Path, log_a: RealLog,
        caplog: pytest.LogCaptureFixture) -> None:
    """Before, one undecodable message raised in the update loop: the run died and the
    next one re-read the same offset and died again."""
    from segstream.core.aggregates import FeatureParams, encode
    from segstream.training.feed import SYSTEMATIC_MISMATCH

    topic = topic_factory("features")
    settings = settings_factory(topic_features=topic, update_publish_rows=300,
                                update_batch_rows=150, update_window_rows=600)
    path = tmp_path / "features.parquet"
    features_file(log_a.state.users, log_a.state.aggs, None).to_parquet(path, index=False)
    run(settings, "train", "--from", str(path), "--k", "7")
    same = real_log(600, 60_000, seed=2)
    strays = Producer(kafka_bootstrap)
    strays.send(topic, b"not a record", key=b"u-junk")
    other = FeatureParams(half_life_short_days=3.0)  # a record of other feature params
    strays.send(topic, encode(same.state.aggs[:1], other)[0], key=b"u-other-params")
    strays.close()
    n = produce(kafka_bootstrap, topic, same, prefix="s")
    with caplog.at_level("WARNING", logger="segstream.core.aggregates"):
        out = run(settings, "update", "--once")
    registry = Registry(settings)
    newest = registry.versions()[0]
    assert newest.tags["kind"] == "incremental", out
    assert registry.load(newest.version).info["rows_seen"] == n  # the strays are not rows
    skipped = [r.getMessage() for r in caplog.records if "skipped the record" in r.getMessage()]
    assert len(skipped) == 2 and "'u-junk'" in skipped[0] and "'u-other-params'" in skipped[1]

    # a caught-up topic that then gets one stray: a poll of nothing but it, skipped
    strays = Producer(kafka_bootstrap)
    strays.send(topic, b"junk again", key=b"u-junk-2")
    strays.close()
    assert "read 1 messages" in run(settings, "update", "--once")
    # nothing but strays, many: a setting differs, said once, not a warning per message
    strays = Producer(kafka_bootstrap)
    for i in range(SYSTEMATIC_MISMATCH):
        strays.send(topic, encode(same.state.aggs[:1], other)[0], key=f"o{i}".encode())
    strays.close()
    result = invoke(settings, "update", "--once")
    assert result.exit_code == 1, result.output
    assert "align the updater's settings with the streaming job's" in result.output
