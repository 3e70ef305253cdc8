"""Ground-truth behaviour of the synthetic personas used by ``segstream generate``.

Each persona is a small set of behavioural parameters, chosen so the personas
differ on the features in the spec (session frequency and depth, dwell-time
spread, path complexity, search/cart/purchase ratios, spend, prime-time and
mobile shares, category focus, engagement trend). Only the generator uses them;
the model never sees these labels, tests compare against them (ARI).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    name: str
    share: float  # share of users
    sessions_per_day: float
    events_per_session: float
    event_mix: dict[str, float]  # probabilities of event types
    dwell_median_s: float
    dwell_sigma: float  # lognormal sigma: the spread of dwell times
    amount_median: float
    prime_time: float  # P(session starts 18:00-23:00 UTC)
    mobile: float  # P(session on a mobile platform)
    category_alpha: float  # Dirichlet concentration: low = focused on one category
    gap_mean_s: float  # mean seconds between events inside a session
    trend: float  # activity growth per window: <0 decaying, >0 growing
    start_late: float = 0.0  # users first appear after this share of the time span


PERSONAS: tuple[Persona, ...] = (
    Persona("power_user", 0.14, 3.0, 14, {
        "page_view": .22, "content_view": .22, "search": .12, "add_to_cart": .08,
        "purchase": .04, "play": .10, "login": .04, "feature_use": .18},
        dwell_median_s=45, dwell_sigma=0.9, amount_median=60, prime_time=0.35, mobile=0.25,
        category_alpha=1.5, gap_mean_s=50, trend=0.0),
    Persona("casual_browser", 0.24, 0.35, 3, {
        "page_view": .70, "content_view": .22, "search": .05, "login": .03},
        dwell_median_s=12, dwell_sigma=0.5, amount_median=25, prime_time=0.30, mobile=0.80,
        category_alpha=0.8, gap_mean_s=25, trend=0.0),
    Persona("bargain_hunter", 0.16, 1.0, 9, {
        "page_view": .22, "search": .34, "add_to_cart": .26, "purchase": .08,
        "content_view": .10},
        dwell_median_s=15, dwell_sigma=0.6, amount_median=14, prime_time=0.25, mobile=0.55,
        category_alpha=0.6, gap_mean_s=30, trend=0.0),
    Persona("binge_viewer", 0.16, 1.2, 7, {
        "play": .62, "content_view": .25, "page_view": .10, "login": .03},
        dwell_median_s=900, dwell_sigma=1.1, amount_median=10, prime_time=0.85, mobile=0.40,
        category_alpha=0.2, gap_mean_s=600, trend=0.0),
    Persona("decaying_at_risk", 0.14, 0.9, 4, {
        "page_view": .55, "content_view": .30, "search": .10, "login": .05},
        dwell_median_s=20, dwell_sigma=0.7, amount_median=30, prime_time=0.30, mobile=0.50,
        category_alpha=0.5, gap_mean_s=40, trend=-3.0),
    Persona("new_explorer", 0.08, 1.3, 8, {
        "page_view": .30, "content_view": .30, "search": .15, "feature_use": .15,
        "play": .05, "add_to_cart": .05},
        dwell_median_s=30, dwell_sigma=0.8, amount_median=20, prime_time=0.40, mobile=0.45,
        category_alpha=5.0, gap_mean_s=35, trend=2.0, start_late=0.7),
    Persona("high_spend_loyalist", 0.08, 0.6, 5, {
        "page_view": .30, "content_view": .15, "add_to_cart": .25, "purchase": .25,
        "login": .05},
        dwell_median_s=25, dwell_sigma=0.5, amount_median=240, prime_time=0.30, mobile=0.30,
        category_alpha=0.4, gap_mean_s=45, trend=0.0),
)

PERSONA_BY_NAME = {p.name: p for p in PERSONAS}

#: After ``--drift-at``, users of a key persona move to the value persona with
#: probability DRIFT_MOVE_SHARE: power users decay, browsers start hunting bargains.
DRIFT_MOVES: dict[str, str] = {
    "power_user": "decaying_at_risk",
    "casual_browser": "bargain_hunter",
    "binge_viewer": "casual_browser",
}
DRIFT_MOVE_SHARE = 0.5
#: Global behaviour shift after the drift point: more sessions on mobile.
DRIFT_MOBILE_BOOST = 0.25

CATEGORIES: tuple[str, ...] = (
    "news", "sports", "fashion", "electronics", "home", "music", "movies", "travel",
)
DESKTOP_PLATFORMS: tuple[str, ...] = ("web", "desktop_app")
MOBILE_PLATFORMS_GEN: tuple[str, ...] = ("ios", "android", "mobile_web")
CHANNELS: tuple[str, ...] = ("direct", "search", "social", "email", "paid")
