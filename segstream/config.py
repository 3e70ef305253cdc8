"""Settings: one typed, frozen object per process.

Values come from, in order of precedence: keyword arguments, environment variables
prefixed ``SEGSTREAM_`` (``SEGSTREAM_REDIS_URL``...), a TOML file named by
``SEGSTREAM_CONFIG_FILE`` (flat keys, unknown keys refused), then the defaults
below. Build it at the entry point (``Settings()``) and pass it down; library code
never reads a global. ``segstream config docs`` regenerates docs/configuration.md
from the descriptions here, and a test keeps that page in step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from segstream.core.aggregates import FeatureParams, Vocabulary
from segstream.core.churn_model import ChurnLabel
from segstream.core.contract import (
    DEFAULT_DESKTOP_PLATFORMS,
    DEFAULT_EVENT_TYPE_ALIASES,
    DEFAULT_MOBILE_PLATFORMS,
)

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "dev", "test", ""}


class Settings(BaseSettings):
    """Every knob of segstream. Field order here is the order of the docs page."""

    model_config = SettingsConfigDict(
        env_prefix="SEGSTREAM_",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # --- general -----------------------------------------------------------------
    env: Literal["dev", "prod"] = Field(
        "dev", description="`prod` refuses placeholder secrets and disabled API auth."
    )
    data_dir: Path = Field(
        Path(".segstream"),
        description="Local state: stack pids/ports/logs, checkpoints, Parquet history, "
        "the embedded model registry.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of every process."
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Bind address of the `--metrics-port` Prometheus endpoints (`segstream "
        "stream`, `segstream webhooks detect|run`); `0.0.0.0` in a container, so that "
        "Prometheus can reach them. The API serves `/metrics` on `api_host`.",
    )

    # --- kafka -------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers (`host:port[,host:port]`). Unset: use the broker "
        "that `segstream stack up` started (its address is read from the data directory).",
    )
    topic_events: str = Field("events", description="Raw behavioural events, keyed by user id.")
    topic_dlq: str = Field(
        "events.dlq", description="Rejected events with `reason`/`detail` headers."
    )
    topic_features: str = Field("features", description="Per-user feature vectors.")
    topic_segment_changes: str = Field(
        "segment-changes", description="Segment transitions published for webhooks."
    )
    topic_partitions: int = Field(
        4, ge=1, le=1024, description="Partitions for topics that `stack up` creates."
    )

    # --- redis -------------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        description="Redis URL (`redis://host:port/db`). Unset: use the redis-server that "
        "`segstream stack up` started.",
    )
    redis_cluster: bool = Field(
        False,
        description="`redis_url` names one node of a Redis Cluster: every client discovers "
        "the masters and routes each key to its slot (maintained redis-py clients).",
    )

    # --- local stack -------------------------------------------------------------
    broker_port: int = Field(
        0, ge=0, le=65535, description="Port of the embedded broker; 0 picks a free one."
    )
    redis_port: int = Field(
        0, ge=0, le=65535, description="Port of the stack's redis-server; 0 picks a free one."
    )
    stack_start_timeout_s: float = Field(
        60.0, gt=0, description="How long `stack up` waits for a service to answer."
    )

    # --- streaming ---------------------------------------------------------------
    stream_source: Literal["python", "kafka"] = Field(
        "python",
        description="`python`: the Kafka reader on PySpark's Python Data Source API; "
        "`kafka`: Spark's JVM connector (needs the spark-sql-kafka jar).",
    )
    stream_starting_offsets: str = Field(
        "earliest",
        description='`earliest`, `latest` or JSON `{"events": {"0": 42}}` for a fresh checkpoint.',
    )
    stream_max_records_per_trigger: int = Field(
        200_000, ge=1, description="Admission control: records read per micro-batch at most."
    )
    stream_trigger: str = Field(
        "1 second", description="Processing-time trigger interval of `segstream stream`."
    )
    stream_checkpoint_dir: Path | None = Field(
        None, description="Spark checkpoint location; unset: `<data_dir>/checkpoints/features`."
    )
    stream_watermark: str = Field(
        "10 minutes", description="Event-time watermark; later events go to the DLQ as `late`."
    )
    stream_state_buckets: int = Field(
        16, ge=1, le=65536,
        description="Users are hashed into this many state groups; each micro-batch "
        "processes a touched group's users together. Fixed for the life of a checkpoint.",
    )
    session_gap_minutes: float = Field(
        30.0, gt=0, description="Inactivity gap that ends a session without `session_id`."
    )
    feature_half_life_short_days: float = Field(
        7.0, gt=0, le=3650,
        description="Half-life of the short decayed rates (`*_rate_short`, the trend).",
    )
    feature_half_life_long_days: float = Field(
        30.0, gt=0, le=3650,
        description="Half-life of the long decayed rates and of the decayed shares "
        "(`*_rate_long`, ratios, dwell). Must exceed the short one.",
    )
    vocab_event_types: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_TYPE_ALIASES),
        description="Your event type names -> canonical types (page_view, content_view, "
        "search, add_to_cart, purchase, play, login, feature_use); matched "
        "case-insensitively; setting it replaces the default aliases. Canonical names "
        "always map to themselves; other names count as activity but feed no ratio.",
    )
    vocab_mobile_platforms: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MOBILE_PLATFORMS),
        description="`platform` values that count as mobile for `mobile_share`.",
    )
    vocab_desktop_platforms: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DESKTOP_PLATFORMS),
        description="`platform` values known not to be mobile (not reported as unrecognised).",
    )
    clock: Literal["wall", "event"] = Field(
        "wall",
        description="What \"now\" is for as-of evaluation: `wall` (live) or `event`, the "
        "newest event time the stream has seen (replays, backfills). docs/features.md "
        "says which default each command uses.",
    )
    rescore_interval_s: float = Field(
        3600.0, gt=0,
        description="The change detector re-evaluates every user at most this often (in "
        "the clock's time), so users whom time alone moves change segment without an event.",
    )
    stream_fail_on_data_loss: bool = Field(
        True, description="Stop when the checkpoint's offsets no longer point into the "
        "events log (a recreated topic, a broker that lost its log); false: read those "
        "partitions from the beginning of their log as it is now (docs/streaming.md).")
    stream_redis_retry_s: float = Field(
        60.0, ge=0, description="How long a micro-batch retries its Redis writes while Redis "
        "is unreachable before the job stops with the error (a restart resumes the batch).")
    stream_state_expiry_days: float | None = Field(
        None, gt=0,
        description="Drop a user's streaming state after this many days without an event "
        "(event time); unset: keep it. The Redis record expires by `feature_ttl_s`.",
    )
    feature_ttl_s: int = Field(
        90 * 24 * 3600, ge=60, description="TTL of a user's feature record in Redis."
    )
    spark_master: str = Field("local[2]", description="Spark master URL.")
    spark_shuffle_partitions: int = Field(
        4, ge=1, description="`spark.sql.shuffle.partitions` of the streaming job."
    )

    # --- training & registry -----------------------------------------------------
    registry_uri: str | None = Field(
        None,
        description="MLflow tracking/registry URI. Unset: sqlite + artefact folder under "
        "`<data_dir>/mlflow` (embedded).",
    )
    model_name: str = Field("segstream-segments", description="Registered model name.")
    random_seed: int = Field(42, description="Seed of every fit.")
    train_k_min: int = Field(3, ge=2, le=100, description="Smallest k that `--k auto` tries.")
    train_k_max: int = Field(12, ge=2, le=100, description="Largest k that `--k auto` tries.")
    gate_silhouette_margin: float = Field(
        0.02, ge=0, description="Gate: a candidate's silhouette may trail the champion's "
        "(same rows) by at most this much.",
    )
    gate_min_share: float = Field(
        0.005, ge=0, lt=1, description="Gate: a segment smaller than this share is collapsed."
    )
    persona_overrides_file: Path | None = Field(
        None, description="YAML: segment id -> name (or {name, description}) overriding the "
        "generated persona names.",
    )
    update_batch_rows: int = Field(
        5000, ge=1, description="`segstream update`: rows per partial_fit mini-batch."
    )
    update_half_life_rows: float | None = Field(
        200_000.0, gt=0, description="Forgetting: rows after which an old row's weight halves "
        "(unset: no forgetting).",
    )
    update_publish_rows: int = Field(
        50_000, ge=1, description="Publish a candidate version after this many new rows."
    )
    update_publish_minutes: float = Field(
        10.0, gt=0, description="...or after this many minutes with new rows."
    )
    update_window_rows: int = Field(
        50_000, ge=100, description="Recent users kept for gates, profiles and drift refits."
    )
    drift_psi_threshold: float = Field(
        0.25, gt=0, description="Refit on the recent window when a feature's PSI passes this."
    )
    drift_distance_ratio: float = Field(
        1.5, gt=1, description="...or when mean distance-to-centroid grows by this factor."
    )
    churn_model_name: str = Field(
        "segstream-churn", description="Registered model name of the churn-risk model (its "
        "own alias `champion`, beside `model_name`).")
    churn_label: ChurnLabel = Field(
        "activity", description="What churned at T means: `activity`, no accepted event in "
        "the `churn_horizon_days` after T; `purchase`, no purchase in them.")
    churn_horizon_days: float = Field(
        14.0, gt=0, le=3650, description="N of the churn label: the days after T looked at.")
    churn_snapshot_every_days: float = Field(
        7.0, gt=0, le=3650, description="`churn train`: snapshot times T this far apart, "
        "back from the newest T whose label window the history covers (end - N).")
    churn_test_snapshots: int = Field(
        1, ge=1, le=100, description="`churn train`: the newest this many snapshot times are "
        "the held-out test period; training uses the times whose label window ends by the "
        "first of them.")
    churn_calibration: Literal["sigmoid", "isotonic"] = Field(
        "sigmoid", description="How the churn model's scores become probabilities, fitted "
        "on out-of-fold scores (3 folds of users): `sigmoid` (Platt; strictly increasing, "
        "so it keeps the trees' ranking) or `isotonic` (a step map: ties among the riskiest "
        "users, and more rows needed).")
    churn_band_edges: tuple[float, float] = Field(
        (0.3, 0.6), description="Churn risk bands: `low` below the first edge, `high` from "
        "the second, `medium` between (calibrated probabilities).")
    churn_gate_margin: float = Field(
        0.0, ge=0, lt=1, description="Gate: the churn candidate's ROC AUC on the test period "
        "must exceed recency alone, the RFM score and the champion churn model by more "
        "than this.")

    # --- serving -----------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Bind address of `segstream serve`.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of `segstream serve`.")
    api_workers: int = Field(1, ge=1, le=64, description="Worker processes of the API server.")
    api_server: Literal["granian", "uvicorn"] = Field(
        "granian", description="ASGI server of `segstream serve`: granian (1.06x uvicorn's "
        "lookup rate on one worker, 1.20x on two, docs/benchmarks.md) or uvicorn "
        "(uvloop, httptools).")
    api_auth_enabled: bool = Field(
        True, description="Require an API key on /v1. Disabling is refused when env=prod."
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Accepted API keys (JSON list in the env var). Sent in `X-API-Key`.",
    )
    api_max_batch_ids: int = Field(
        1000, ge=1, le=100_000, description="Most user ids in one batch lookup (more: 413)."
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest accepted request body (more: 413)."
    )
    webhook_urls: list[str] = Field(
        default_factory=list, description="CMS endpoints that receive segment changes."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of `X-Segstream-Signature`. No default on purpose."
    )
    api_cold_start_segment: int | None = Field(
        None,
        description="Segment id `?default=true` answers for an unknown user; unset: the "
        "champion's largest segment.",
    )
    api_stale_after_s: float = Field(
        86_400.0, gt=0, description="Features older than this are flagged `stale` in lookups."
    )
    api_model_poll_s: float = Field(
        5.0, gt=0, description="How often the API polls the registry's champion alias."
    )
    api_personalization_file: Path | None = Field(
        None,
        description="YAML mapping segment -> content templates per placement, and experiments "
        "(holdout shares); unset: the built-in mapping (docs/serving.md).",
    )
    api_drift_window: int = Field(
        5000, ge=100, le=1_000_000,
        description="Served feature vectors kept per worker for PSI / segment-share drift.",
    )
    segment_min_dwell_s: float = Field(
        3600.0, ge=0,
        description="Hysteresis: a user must stay this long in a segment before another "
        "change is published.",
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=100, description="Delivery attempts before a change is dead-lettered."
    )
    webhook_backoff_s: float = Field(
        0.5, gt=0, description="First retry delay; doubles per attempt, with full jitter."
    )
    webhook_backoff_max_s: float = Field(
        60.0, gt=0, description="Longest delay between two delivery attempts."
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="HTTP timeout of one delivery.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("SEGSTREAM_CONFIG_FILE")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(
                    f"SEGSTREAM_CONFIG_FILE={config_file!r} does not exist; "
                    "unset it or point it at a TOML file"
                )
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _refuse_unsafe_prod(self) -> Settings:
        if self.env == "prod":
            if not self.api_auth_enabled:
                raise ValueError("api_auth_enabled=false is refused when env=prod")
            for key in self.api_keys:
                if key.get_secret_value().lower() in PLACEHOLDER_SECRETS:
                    raise ValueError("api_keys holds a placeholder key; set real keys for prod")
            if self.webhook_urls and self.webhook_secret is None:
                raise ValueError("webhook_urls are set but webhook_secret is not")
            secret = self.webhook_secret
            if secret is not None and secret.get_secret_value().lower() in PLACEHOLDER_SECRETS:
                raise ValueError("webhook_secret is a placeholder; set a real secret for prod")
        return self

    @model_validator(mode="after")
    def _check_band_edges(self) -> Settings:
        low, high = self.churn_band_edges
        if not 0.0 < low < high < 1.0:
            raise ValueError(f"churn_band_edges must satisfy 0 < low < high < 1, got "
                             f"{self.churn_band_edges}")
        return self

    @model_validator(mode="after")
    def _check_feature_params(self) -> Settings:
        self.feature_params()  # half-lives in order, vocabulary onto canonical types
        return self

    def feature_params(self) -> FeatureParams:
        """What the aggregate fold and the as-of evaluation depend on."""
        return FeatureParams(
            half_life_short_days=self.feature_half_life_short_days,
            half_life_long_days=self.feature_half_life_long_days,
            session_gap_minutes=self.session_gap_minutes,
            vocabulary=Vocabulary(event_types=dict(self.vocab_event_types),
                                  mobile_platforms=tuple(self.vocab_mobile_platforms)))

    def now_ms(self, stream_time_ms: int | None = None) -> int:
        """"Now" by the ``clock`` setting: the wall clock, or the stream's event time
        (``stream_time_ms``, the newest event time seen; the wall clock until known)."""
        import time

        if self.clock == "event" and stream_time_ms is not None:
            return int(stream_time_ms)
        return int(time.time() * 1000)

    # --- derived paths -----------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.stream_checkpoint_dir or self.data_dir / "checkpoints" / "features"

    @property
    def history_dir(self) -> Path:
        return self.data_dir / "history" / "features"

    @property
    def dead_letter_dir(self) -> Path:
        """Full bytes of dead letters too large for the DLQ topic (``segstream.dead_letters``)."""
        return self.data_dir / "dead-letters"

    @property
    def stack_dir(self) -> Path:
        return self.data_dir / "stack"


def settings_table() -> list[dict[str, Any]]:
    """Rows (env var, type, default, description) for docs/configuration.md."""
    rows = []
    for name, field in Settings.model_fields.items():
        default: Any = field.default
        if field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        annotation = str(field.annotation).replace("typing.", "").replace("pathlib.", "")
        annotation = annotation.replace("<class '", "").replace("'>", "")
        rows.append(
            {
                "env": f"SEGSTREAM_{name.upper()}",
                "name": name,
                "type": annotation,
                "default": "unset" if default is None else repr(default),
                "description": field.description or "",
            }
        )
    return rows


def render_configuration_doc() -> str:
    lines = [
        "# Configuration",
        "",
        "Generated from `segstream/config.py` by `segstream config docs`; do not edit by hand.",
        "",
        "Every setting is read from the environment variable shown (prefix `SEGSTREAM_`), or",
        "from a flat TOML file named by `SEGSTREAM_CONFIG_FILE` (keys are the lower-case names",
        "in the second column; unknown keys are refused). Environment beats file beats default.",
        "`segstream config show` prints the values in effect, secrets masked.",
        "",
        "| variable | key | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for row in settings_table():
        desc = row["description"].replace("|", "\\|")
        lines.append(
            f"| `{row['env']}` | `{row['name']}` | `{row['type']}` | `{row['default']}` | {desc} |"
        )
    return "\n".join(lines) + "\n"
