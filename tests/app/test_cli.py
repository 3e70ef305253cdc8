"""The `segstream` command: help, generate to a file and to Kafka, usage errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segstream.adapters.kafka import count_records
from segstream.app.cli import app
from segstream.config import Settings
from segstream.sources.generator import GeneratorConfig, generate, iter_jsonl

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("stack", "generate", "replay", "config", "demo"):
        assert command in result.output


def test_generate_to_a_file_is_the_seeded_log(tmp_path: Path) -> None:
    out, truth = tmp_path / "e.jsonl", tmp_path / "t.csv"
    result = runner.invoke(app, ["generate", "--users", "30", "--events", "900", "--seed", "4",
                                 "--duplicate-rate", "0.05", "--out", str(out),
                                 "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    expected = generate(GeneratorConfig(users=30, events=900, seed=4, duplicate_rate=0.05))
    assert list(iter_jsonl(out)) == expected.values
    assert len(truth.read_text().splitlines()) == 31


@pytest.mark.kafka
def test_generate_to_a_topic_delivers_every_record(
    settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_factory()
    monkeypatch.setenv("SEGSTREAM_KAFKA_BOOTSTRAP", settings.kafka_bootstrap or "")
    monkeypatch.setenv("SEGSTREAM_DATA_DIR", str(settings.data_dir))
    topic = topic_factory("gen")
    result = runner.invoke(app, ["generate", "--users", "40", "--events", "2000",
                                 "--malformed-rate", "0.02", "--topic", topic])
    assert result.exit_code == 0, result.output
    expected = len(generate(GeneratorConfig(users=40, events=2000, malformed_rate=0.02)).values)
    assert f"sent {expected:,} records" in result.output
    assert count_records(settings.kafka_bootstrap or "", topic) == expected


@pytest.mark.parametrize(("args", "message"), [
    (["generate"], "exactly one of --topic"),
    (["generate", "--topic", "x", "--out", "y"], "exactly one of --topic"),
    (["generate", "--out", "y", "--users", "0"], "users >= 1"),
    (["replay", "nope.xyz"], "cannot tell the format"),
])
def test_usage_errors_exit_2_with_advice(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_invalid_settings_are_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSTREAM_TOPIC_PARTITIONS", "zero")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "topic_partitions" in result.output
