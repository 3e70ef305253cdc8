"""`segstream churn train | evaluate` and `segstream models list` on a real MLflow
registry (sqlite in a temp dir): the churn model registered beside the segment model,
loaded back with the same scores, gated against the champion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from segstream.adapters.registry import ChurnRegistry, Registry
from segstream.config import Settings
from segstream.training.churn import split, train_churn
from tests.support.churn_logs import churn_history, churn_log
from tests.support.real_logs import PARAMS

pytestmark = pytest.mark.mlflow


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return churn_history(tmp_path_factory.mktemp("churn") / "history", churn_log(400, seed=5))


def invoke(data_dir: Path, *args: str, **env: str) -> Result:
    from segstream.app.cli import app

    return CliRunner().invoke(app, list(args), env={"SEGSTREAM_DATA_DIR": str(data_dir),
                                                   "COLUMNS": "200", **env})


def test_registry_round_trip_and_the_champion_gate(tmp_path: Path, hist: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = train_churn(settings, hist)
    assert first.gate.passed and first.promoted and first.version == "1", first.gate.reasons
    churn = ChurnRegistry(settings)
    assert churn.champion_version() == "1"
    assert Registry(settings).versions() == []  # the segment model's registry is apart
    tags = churn.show("champion").tags
    assert tags["kind"] == "churn" and tags["label"] == "activity"
    assert tags["horizon_days"] == "14" and tags["gate"] == "passed"
    assert tags["feature_params"] == f"{PARAMS.fingerprint:08x}"
    assert tags["as_of_ms"] == str(max(first.train.times))
    loaded = churn.load("champion")
    assert loaded.version == "1" and loaded.metrics["roc_auc"] == first.model.metrics["roc_auc"]
    _, test = split(settings, hist)
    a, b = first.model.score(test.X), loaded.score(test.X)
    np.testing.assert_array_equal(a.risk, b.risk)
    assert a.reasons == b.reasons and a.bands == b.bands
    assert loaded.info["test_times_ms"] == test.times and loaded.info["baselines"]["recency"]

    # the same data again cannot beat the champion: registered, rejected, not promoted
    again = train_churn(settings, hist)
    assert again.version == "2" and not again.gate.passed and again.champion == "1"
    assert "does not beat the champion version 1" in again.gate.summary()
    assert churn.champion_version() == "1" and churn.show("2").tags["gate"] == "rejected"

    # another label is not compared with that champion
    other = train_churn(Settings(data_dir=tmp_path / "data", churn_label="purchase"), hist)
    assert other.champion is None and "has other label activity" in other.champion_note
    assert other.model.label["label"] == "purchase"


def test_churn_commands_and_models_list(tmp_path: Path, hist: Path) -> None:
    data = tmp_path / "data"
    seg = invoke(data, "train", "--from", str(hist), "--k", "5")
    assert seg.exit_code == 0, seg.output
    out = invoke(data, "churn", "train", "--from", str(hist))
    assert out.exit_code == 0, out.output
    text = out.output
    assert "label: churned at T: no accepted event in the 14 days after T (activity)" in text
    assert "train: " in text and "8 snapshots" in text and "test:  " in text
    for row in ("churn model", "recency", "rfm", "base rate", "calibration (test rows)",
                "bands (test rows)", "per segment (segment model 1)"):
        assert row in text, text
    assert "gates: passed; churn champion" in text

    report = tmp_path / "churn.md"
    ev = invoke(data, "churn", "evaluate", "--from", str(hist), "--out", str(report))
    assert ev.exit_code == 0, ev.output
    assert "churn version 1 on" in ev.output and "ROC AUC" in ev.output
    md = report.read_text()
    assert md.startswith("# Churn evaluation") and "| churn model |" in md

    listed = invoke(data, "models", "list")
    assert listed.exit_code == 0, listed.output
    assert "segstream-segments" in listed.output and "segstream-churn (churn risk)" in listed.output
    assert "activity 14 days" in listed.output

    # what cannot be done says why
    bad = invoke(data, "churn", "train", "--from", str(hist),
                 SEGSTREAM_CHURN_HORIZON_DAYS="60")
    assert bad.exit_code == 1
    assert "too short for a churn label of 60 days" in " ".join(bad.output.split())
    missing = invoke(data, "churn", "evaluate", "--from", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "does not exist" in missing.output
    empty = invoke(tmp_path / "other", "churn", "evaluate", "--from", str(hist))
    assert empty.exit_code == 1
    assert "`segstream churn train` promotes a version" in " ".join(empty.output.split())


def test_the_churn_champion_is_promoted_and_rolled_back_like_the_segment_model(
        tmp_path: Path, hist: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    assert train_churn(settings, hist).version == "1"
    rejected = train_churn(settings, hist)  # the same data cannot beat the champion
    assert rejected.version == "2" and not rejected.promoted
    churn = ChurnRegistry(settings)
    refused = invoke(data, "models", "promote", "2", "--kind", "churn")
    assert refused.exit_code == 1 and "only versions that passed" in refused.output
    assert churn.champion_version() == "1"
    forced = invoke(data, "models", "promote", "2", "--kind", "churn", "--force")
    assert forced.exit_code == 0, forced.output
    assert churn.champion_version() == "2" and "champion -> 2" in forced.output
    back = invoke(data, "models", "rollback", "--kind", "churn")
    assert back.exit_code == 0 and "rolled back" in back.output, back.output
    assert churn.champion_version() == "1"
    assert Registry(settings).versions() == [], "the segment model's registry is untouched"
    wrong = invoke(data, "models", "rollback", "--kind", "risk")
    assert wrong.exit_code == 2 and "use segments or churn" in wrong.output
