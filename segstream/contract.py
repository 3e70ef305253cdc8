"""The shared contract: event schema v1 and the versioned feature spec.

Imported by streaming/, training/ and serving/. It imports only the standard
library so that any process (a Spark executor, the API, a CLI) can load it cheaply.
Everything that names an event field or a feature derives it from here: the Spark
schema, the pandas column order, the Redis layout, the API models.

Examples
--------
>>> FEATURE_SPEC.version
'v1'
>>> FEATURE_SPEC.names[:3]
('recency_days', 'frequency', 'monetary')
>>> FEATURE_SPEC.index("monetary")
2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# --------------------------------------------------------------------------- events

EVENT_SCHEMA_VERSION = 1

#: Required fields of an event and their JSON types.
REQUIRED_EVENT_FIELDS: tuple[str, ...] = ("user_id", "ts", "event_type")

#: Optional string fields.
OPTIONAL_STRING_FIELDS: tuple[str, ...] = (
    "event_id",
    "session_id",
    "content_id",
    "category",
    "platform",
    "channel",
)

#: Optional non-negative numeric fields.
OPTIONAL_NUMBER_FIELDS: tuple[str, ...] = ("dwell_ms", "amount")

#: Field order of a normalised event (what the validator returns and Spark parses).
EVENT_FIELDS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "ts",  # normalised: epoch milliseconds (int)
    "event_type",
    "session_id",
    "content_id",
    "category",
    "dwell_ms",
    "amount",
    "platform",
    "channel",
    "properties",  # normalised: JSON text of the object, or None
)

#: Event types the feature spec gives meaning to. Other types are accepted and
#: count as activity (frequency, breadth), but feed no ratio.
KNOWN_EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "content_view",
    "search",
    "add_to_cart",
    "purchase",
    "play",
    "login",
    "feature_use",
)

MOBILE_PLATFORMS: tuple[str, ...] = ("ios", "android", "mobile_web")

#: Bounds of what the validator accepts.
MAX_RECORD_BYTES = 16_384
MAX_FIELD_CHARS = 256
MAX_FUTURE_SKEW_MS = 24 * 3600 * 1000  # an event more than a day ahead of the clock is absurd
MIN_EVENT_TS_MS = 946_684_800_000  # 2000-01-01: earlier timestamps are unit mistakes

#: Reasons a record is dead-lettered. Stable strings: they are metric label values,
#: DLQ header values and documented in docs/events.md.
DlqReason = Literal[
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "record_too_large",
    "missing_field",
    "empty_field",
    "wrong_type",
    "field_too_long",
    "bad_timestamp",
    "ts_in_future",
    "negative_number",
    "late",
]
DLQ_REASONS: tuple[str, ...] = DlqReason.__args__  # type: ignore[attr-defined]

# ------------------------------------------------------------------- feature spec

FeatureKind = Literal["count", "money", "duration", "ratio", "score", "days"]


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature: its name, unit and meaning, and what a missing value means.

    ``heavy_tailed`` tells preprocessing to apply ``log1p`` before scaling.
    ``default`` is what serving uses for a feature the caller did not post.
    """

    name: str
    kind: FeatureKind
    unit: str
    description: str
    default: float = 0.0
    heavy_tailed: bool = False
    dtype: str = "double"


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """An ordered, versioned list of features. Order is the vector layout."""

    version: str
    features: tuple[Feature, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def defaults(self) -> tuple[float, ...]:
        return tuple(f.default for f in self.features)

    def __len__(self) -> int:
        return len(self.features)

    def index(self, name: str) -> int:
        for i, f in enumerate(self.features):
            if f.name == name:
                return i
        raise KeyError(f"unknown feature {name!r}; the spec {self.version} has {self.names}")

    def check_version(self, other: str, *, what: str) -> None:
        """Refuse data or a model built on another spec version, naming both."""
        if other != self.version:
            raise FeatureSpecMismatch(
                f"{what} was built on feature spec {other!r} but this code uses "
                f"{self.version!r}; retrain the model or recompute the features"
            )


class FeatureSpecMismatch(ValueError):
    """Raised where a model or stored features use another feature spec version."""


FEATURE_SPEC = FeatureSpec(
    version="v1",
    features=(
        Feature("recency_days", "days", "days",
                "Days the user had been away before the current visit: from the end of "
                "the previous session to the last event (the window length with one "
                "session).", default=30.0, heavy_tailed=True),
        Feature("frequency", "count", "sessions",
                "Sessions in the lifetime window.", default=1.0, heavy_tailed=True),
        Feature("monetary", "money", "currency units",
                "Sum of purchase amounts in the window.", heavy_tailed=True),
        Feature("avg_order_value", "money", "currency units",
                "monetary / number of purchases (0 without purchases).", heavy_tailed=True),
        Feature("events_per_session", "count", "events",
                "Mean events per session (session depth).", default=3.0, heavy_tailed=True),
        Feature("session_duration", "duration", "seconds",
                "Mean session length, first to last event.", default=120.0,
                heavy_tailed=True),
        Feature("dwell_mean", "duration", "seconds",
                "Mean content dwell time over events that carry dwell_ms.", default=20.0,
                heavy_tailed=True),
        Feature("dwell_variance", "duration", "seconds^2",
                "Population variance of content dwell time.", heavy_tailed=True),
        Feature("path_complexity", "score", "bits",
                "Shannon entropy of within-session event-type transitions.", default=1.0),
        Feature("adoption_breadth", "ratio", "share",
                "Distinct event types used / number of known event types.", default=0.25),
        Feature("content_breadth", "count", "items",
                "Distinct content items touched in the window.", default=2.0,
                heavy_tailed=True),
        Feature("search_ratio", "ratio", "share", "search events / all events."),
        Feature("cart_ratio", "ratio", "share", "add_to_cart events / all events."),
        Feature("purchase_ratio", "ratio", "share", "purchase events / all events."),
        Feature("prime_time_share", "ratio", "share",
                "Share of events between 18:00 and 23:00 UTC.", default=0.3),
        Feature("mobile_share", "ratio", "share",
                "Share of events from ios, android or mobile_web.", default=0.5),
        Feature("top_category_share", "ratio", "share",
                "Share of categorised events in the user's most frequent category.",
                default=0.5),
        Feature("active_days", "count", "days",
                "Distinct UTC days with activity in the window.", default=1.0,
                heavy_tailed=True),
        Feature("engagement_trend", "score", "ratio in [-1, 1]",
                "(recent - earlier) / (recent + earlier) events, recent = last 7 days "
                "of the window, earlier = the 7 days before."),
    ),
)

FEATURE_NAMES: tuple[str, ...] = FEATURE_SPEC.names

# ------------------------------------------------------------------ dead letters

#: Headers of a record on the dead-letter topic. The value is the original bytes.
DLQ_HEADER_REASON = "reason"  # one of DLQ_REASONS
DLQ_HEADER_DETAIL = "detail"  # human-readable: field and what is wrong
DLQ_HEADER_SOURCE = "source"  # where it came from: "events:2@1045", "replay:file.csv:17"
