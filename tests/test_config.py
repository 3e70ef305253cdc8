"""Settings: env prefix, TOML file, strictness, prod safety, docs kept in step."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from segstream.config import Settings, render_configuration_doc

ROOT = Path(__file__).resolve().parents[1]


def test_env_vars_with_prefix_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSTREAM_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SEGSTREAM_TOPIC_PARTITIONS", "8")
    monkeypatch.setenv("SEGSTREAM_API_KEYS", '["k1", "k2"]')
    s = Settings()
    assert s.redis_url == "redis://127.0.0.1:1/0"
    assert s.topic_partitions == 8
    assert [k.get_secret_value() for k in s.api_keys] == ["k1", "k2"]


def test_toml_file_is_read_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "segstream.toml"
    cfg.write_text('topic_events = "clicks"\nfeature_half_life_long_days = 14\n')
    monkeypatch.setenv("SEGSTREAM_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("SEGSTREAM_FEATURE_HALF_LIFE_LONG_DAYS", "21")
    s = Settings()
    assert s.topic_events == "clicks"
    assert s.feature_half_life_long_days == 21


def test_unknown_key_in_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "segstream.toml"
    cfg.write_text("topic_evnets = 'typo'\n")
    monkeypatch.setenv("SEGSTREAM_CONFIG_FILE", str(cfg))
    with pytest.raises(ValidationError, match="topic_evnets"):
        Settings()


def test_missing_config_file_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSTREAM_CONFIG_FILE", "/nonexistent/segstream.toml")
    with pytest.raises(FileNotFoundError, match="unset it or point it at a TOML file"):
        Settings()


def test_bad_value_names_the_field() -> None:
    with pytest.raises(ValidationError, match="topic_partitions"):
        Settings(topic_partitions=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api_auth_enabled": False}, "api_auth_enabled=false is refused"),
        ({"api_keys": ["changeme"]}, "placeholder key"),
        ({"api_keys": ["a-real-key-123"], "webhook_urls": ["http://x"]}, "webhook_secret"),
        ({"api_keys": ["a-real-key-123"], "webhook_secret": "changeme"},
         "webhook_secret is a placeholder"),
    ],
)
def test_prod_refuses_unsafe_settings(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(env="prod", **overrides)


def test_dev_allows_disabling_auth() -> None:
    assert Settings(api_auth_enabled=False).api_auth_enabled is False


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.topic_events = "x"  # type: ignore[misc]


def test_configuration_doc_is_up_to_date() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == render_configuration_doc(), (
        "docs/configuration.md is stale: run `segstream config docs`"
    )
    for name in Settings.model_fields:
        assert f"`SEGSTREAM_{name.upper()}`" in page


def test_feature_params_follow_the_settings() -> None:
    s = Settings(feature_half_life_short_days=3, feature_half_life_long_days=60,
                 vocab_event_types={"Buy": "purchase"}, vocab_mobile_platforms=["handy"])
    p = s.feature_params()
    assert (p.half_life_short_days, p.half_life_long_days) == (3, 60)
    assert p.vocabulary.canonical_types(["buy", " BUY ", "purchase", "order"]).tolist() == [
        4, 4, 4, 8]  # the setting replaces the default aliases: "order" is now "other"
    assert p.vocabulary.is_mobile(["Handy", "ios"]).tolist() == [True, False]
    assert p.fingerprint != Settings().feature_params().fingerprint


@pytest.mark.parametrize(("overrides", "message"), [
    ({"feature_half_life_short_days": 30, "feature_half_life_long_days": 7}, "short < long"),
    ({"vocab_event_types": {"click": "tap"}}, "map to unknown types"),
])
def test_inconsistent_feature_settings_are_refused(overrides: dict[str, object],
                                                   message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**overrides)


def test_event_clock_uses_stream_time_and_wall_clock_ignores_it() -> None:
    assert Settings(clock="event").now_ms(stream_time_ms=123) == 123
    assert Settings(clock="wall").now_ms(stream_time_ms=123) > 1_700_000_000_000
