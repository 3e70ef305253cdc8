"""The shared contract: event schema v1, the vocabularies and the versioned feature spec.

Imported by streaming/, training/ and serving/. It imports only the standard
library so that any process (a Spark executor, the API, a CLI) can load it cheaply.
Everything that names an event field or a feature derives it from here: the Spark
schema, the pandas column order, the Redis layout, the API models.

Examples
--------
>>> FEATURE_SPEC.version
'v4'
>>> FEATURE_SPEC.names[:3]
('recency_days', 'has_purchased', 'purchase_recency_days')
>>> FEATURE_SPEC.index("lifetime_spend")
6
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# --------------------------------------------------------------------------- events

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

#: Canonical event types: the feature spec gives them meaning. A log's own names map
#: onto them through the vocabulary (``DEFAULT_EVENT_TYPE_ALIASES`` overridable by the
#: ``vocab_event_types`` setting); other types are accepted and count as activity
#: (sessions, rates, breadth of content) but feed no ratio, and `replay` reports them.
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

#: Common spellings of the canonical types (matched case-insensitively, trimmed).
DEFAULT_EVENT_TYPE_ALIASES: dict[str, str] = {
    "view": "page_view", "pageview": "page_view", "page-view": "page_view",
    "product_view": "content_view", "item_view": "content_view",
    "add_to_cart": "add_to_cart", "cart_add": "add_to_cart", "addtocart": "add_to_cart",
    "cart": "add_to_cart",
    "order": "purchase", "transaction": "purchase", "checkout_complete": "purchase",
    "signin": "login", "sign_in": "login",
}

#: Platforms that count as mobile for ``mobile_share`` (matched case-insensitively).
DEFAULT_MOBILE_PLATFORMS: tuple[str, ...] = (
    "mobile", "tablet", "app", "ios", "android", "mobile_web",
)
#: Platforms known not to be mobile: neither these nor the mobile ones are reported as
#: unrecognised by `replay`.
DEFAULT_DESKTOP_PLATFORMS: tuple[str, ...] = ("web", "desktop", "desktop_app", "pc")

#: Bounds of what the validator accepts.
MAX_RECORD_BYTES = 16_384
MAX_FIELD_CHARS = 256
MAX_FUTURE_SKEW_MS = 24 * 3600 * 1000  # an event more than a day ahead of the clock is absurd
MIN_EVENT_TS_MS = 0  # 1970-01-01: epoch units are told apart by magnitude (events.py)
#: Largest ``dwell_ms`` / ``amount`` (31,700 years of dwell; a quadrillion in money): far
#: past any real value, and low enough that the aggregates' sums and sums of squares
#: stay finite (a 1e200 ms dwell made the dwell variance NaN).
MAX_EVENT_NUMBER = 1e15

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

FeatureKind = Literal["count", "money", "duration", "ratio", "score", "days", "rate", "flag"]
#: How time enters a feature: ``as_of`` features change as time passes with no event,
#: ``decayed`` ones are shares of exponentially decayed counts (they follow recent
#: behaviour), ``lifetime`` ones count every event since the user's first.
TimeBasis = Literal["as_of", "decayed", "lifetime"]


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature: its name, unit, meaning, time basis, and what a missing value means.

    ``heavy_tailed`` tells preprocessing to apply ``log1p`` before scaling.
    ``grows_with_age``: a running total that grows with the user's age at constant
    behaviour (tenure, lifetime counts). Its distribution shifts as the user base ages,
    not as it changes, so drift checks leave it out (``training/baseline.py``).
    ``default`` is what serving uses for a feature the caller did not post.
    ``given``: the name of the flag feature this one describes (``has_purchased`` for
    the purchase features). Without the flag the feature has no information about the
    user: preprocessing centres and scales it on the flagged users and places the others
    at the flagged users' centre, so the flag alone separates the two groups and the
    feature's spread describes the flagged ones. ``nullable``: the feature has no value
    without the flag (days since a purchase that never happened): it is missing
    (``NaN``; ``null`` in JSON), never a made-up number.
    """

    name: str
    kind: FeatureKind
    unit: str
    description: str
    time: TimeBasis = "lifetime"
    default: float = 0.0
    heavy_tailed: bool = False
    grows_with_age: bool = False
    dtype: str = "double"
    given: str | None = None
    nullable: bool = False


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

    def __post_init__(self) -> None:
        for f in self.features:
            if f.given is not None and self.features[self.index(f.given)].kind != "flag":
                raise ValueError(f"{f.name}: given={f.given!r} must name a flag feature")
            if f.nullable and f.given is None:
                raise ValueError(f"{f.name}: a nullable feature names the flag it needs")

    def __len__(self) -> int:
        return len(self.features)

    @property
    def given_columns(self) -> tuple[int, ...]:
        """Per feature, the column of the flag it is conditional on (-1: none)."""
        return tuple(-1 if f.given is None else self.index(f.given) for f in self.features)

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


DAY_MS = 86_400_000  # feature days are UTC days of event time
#: ``active_days`` counts distinct UTC days with activity in this many days up to as_of.
ACTIVE_DAYS_WINDOW = 30
#: The decayed rates are divided by ``1 - 2^(-T/h)``, the share of a steady user's sum
#: that ``T`` days of history can have built up, with ``T`` = tenure floored at this
#: (a first event alone would otherwise divide by ~0).
RATE_WARMUP_FLOOR_DAYS = 1.0

#: The flag the purchase features are conditional on (``Feature.given``).
PURCHASED = "has_purchased"

FEATURE_SPEC = FeatureSpec(
    version="v4",
    features=(
        Feature("recency_days", "days", "days",
                "Days from the user's last accepted event to as_of.", "as_of",
                default=7.0, heavy_tailed=True),
        Feature("has_purchased", "flag", "0 or 1",
                "1 if the user has made at least one purchase by as_of, else 0.",
                default=0.0),
        Feature("purchase_recency_days", "days", "days",
                "Days from the last purchase to as_of; null for a user who never "
                "purchased.", "as_of", default=math.nan, heavy_tailed=True,
                given=PURCHASED, nullable=True),
        Feature("tenure_days", "days", "days",
                "Days from the user's first accepted event to as_of.", "as_of",
                default=30.0, heavy_tailed=True, grows_with_age=True),
        Feature("lifetime_sessions", "count", "sessions",
                "Sessions since the first event.", default=5.0, heavy_tailed=True,
                grows_with_age=True),
        Feature("lifetime_orders", "count", "orders",
                "Purchase events since the first event.", heavy_tailed=True,
                grows_with_age=True, given=PURCHASED),
        Feature("lifetime_spend", "money", "currency units",
                "Sum of purchase amounts since the first event.", heavy_tailed=True,
                grows_with_age=True, given=PURCHASED),
        Feature("avg_order_value", "money", "currency units",
                "lifetime_spend / lifetime_orders; null without orders.", default=math.nan,
                heavy_tailed=True, given=PURCHASED, nullable=True),
        Feature("session_rate_short", "rate", "sessions/day",
                "Sessions per day, exponentially decayed with the short half-life "
                "(default 7 days), evaluated at as_of.", "as_of", default=0.3,
                heavy_tailed=True),
        Feature("session_rate_long", "rate", "sessions/day",
                "Sessions per day, decayed with the long half-life (default 30 days), "
                "evaluated at as_of.", "as_of", default=0.3, heavy_tailed=True),
        Feature("order_rate_short", "rate", "orders/day",
                "Orders per day, short half-life, at as_of.", "as_of", heavy_tailed=True,
                given=PURCHASED),
        Feature("order_rate_long", "rate", "orders/day",
                "Orders per day, long half-life, at as_of.", "as_of", heavy_tailed=True,
                given=PURCHASED),
        Feature("spend_rate_short", "rate", "currency units/day",
                "Spend per day, short half-life, at as_of.", "as_of", heavy_tailed=True,
                given=PURCHASED),
        Feature("spend_rate_long", "rate", "currency units/day",
                "Spend per day, long half-life, at as_of.", "as_of", heavy_tailed=True,
                given=PURCHASED),
        Feature("engagement_trend", "score", "ratio in [-1, 1]",
                "(short event rate - long event rate) / (short + long), at as_of: 0 for "
                "steady activity, falling towards -1 while nothing arrives.", "as_of"),
        Feature("events_per_session", "count", "events",
                "Lifetime events / lifetime sessions (session depth).", default=3.0,
                heavy_tailed=True),
        Feature("session_duration", "duration", "seconds",
                "Mean session length, first to last event, over lifetime sessions.",
                default=120.0, heavy_tailed=True),
        Feature("dwell_mean", "duration", "seconds",
                "Decayed mean content dwell time over events that carry dwell_ms.",
                "decayed", default=20.0, heavy_tailed=True),
        Feature("dwell_variance", "duration", "seconds^2",
                "Decayed population variance of content dwell time.", "decayed",
                heavy_tailed=True),
        Feature("path_complexity", "score", "bits",
                "Shannon entropy of within-session transitions between canonical event "
                "types.", default=1.0),
        Feature("adoption_breadth", "ratio", "share",
                "Distinct canonical event types used / number of canonical types.",
                default=0.25),
        Feature("content_breadth", "count", "items",
                "Distinct content items touched (exact up to 32, then a KMV estimate).",
                default=2.0, heavy_tailed=True, grows_with_age=True),
        Feature("search_ratio", "ratio", "share", "Decayed search events / events.",
                "decayed"),
        Feature("cart_ratio", "ratio", "share", "Decayed add_to_cart events / events.",
                "decayed"),
        Feature("purchase_ratio", "ratio", "share", "Decayed purchase events / events.",
                "decayed", given=PURCHASED),
        Feature("prime_time_share", "ratio", "share",
                "Decayed share of events between 18:00 and 23:00 UTC.", "decayed",
                default=0.3),
        Feature("mobile_share", "ratio", "share",
                "Decayed share of events from a mobile platform (vocabulary setting).",
                "decayed", default=0.5),
        Feature("top_category_share", "ratio", "share",
                "Share of categorised events in the user's most frequent category.",
                default=0.5),
        Feature("active_days", "count", "days",
                "Distinct UTC days with activity in the 30 days up to as_of.", "as_of",
                default=3.0, heavy_tailed=True),
    ),
)

FEATURE_NAMES: tuple[str, ...] = FEATURE_SPEC.names

# ------------------------------------------------------------------ dead letters

#: Headers of a record on the dead-letter topic. The value is the original bytes.
DLQ_HEADER_REASON = "reason"  # one of DLQ_REASONS
DLQ_HEADER_DETAIL = "detail"  # human-readable: field and what is wrong
DLQ_HEADER_SOURCE = "source"  # where it came from: "events:2@1045", "replay:file.csv:17"
#: Only on a dead letter too large for the topic (``segstream.adapters.dead_letters``): the value
#: (or key) on the topic is an excerpt; the full bytes are in the dead-letter store file
#: named by ``stored`` (relative to ``Settings.dead_letter_dir``).
DLQ_HEADER_STORED = "stored"
DLQ_HEADER_ORIGINAL_BYTES = "original_bytes"
DLQ_HEADER_SHA256 = "sha256"  # hex sha256 of the full value
DLQ_HEADER_ORIGINAL_KEY_BYTES = "original_key_bytes"
DLQ_HEADER_KEY_SHA256 = "key_sha256"
