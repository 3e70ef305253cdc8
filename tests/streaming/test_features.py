"""The feature transform on static data: hand-computed values, and the batch command."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from segstream.contract import FEATURE_SPEC
from segstream.generator import GeneratorConfig, generate
from streaming.batch import compute_features as batch_features
from streaming.batch import compute_features_pandas, write_features
from streaming.features import DAY_MS, OUTPUT_COLUMNS, user_features

T0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS + 19 * 3_600_000  # a day at 19:00 UTC
MIN = 60_000
V1 = T0 - 10 * DAY_MS - 9 * 3_600_000


def _events(rows: list[dict[str, Any]]) -> pd.DataFrame:
    cols = ("user_id", "event_id", "ts", "event_type", "session_id", "content_id", "category",
            "dwell_ms", "amount", "platform")
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows])


def test_hand_computed_user() -> None:
    u = "u"
    rows = [
        # an old visit 40 days back: outside the 30-day window
        dict(event_id="e0", ts=T0 - 40 * DAY_MS, event_type="purchase", amount=999.0),
        # visit 1 (gap session): 10 days and 9 hours (10:00 UTC) before, 2 events 5 min apart
        dict(event_id="e1", ts=V1, event_type="page_view", content_id="c1",
             category="a", dwell_ms=10_000.0, platform="ios"),
        dict(event_id="e2", ts=V1 + 5 * MIN, event_type="search", platform="ios"),
        # visit 2 (session_id s9): 3 events, last one is the user's last event
        dict(event_id="e3", ts=T0 - 2 * MIN, event_type="page_view", session_id="s9",
             content_id="c2", category="b", dwell_ms=30_000.0, platform="web"),
        dict(event_id="e4", ts=T0 - MIN, event_type="add_to_cart", session_id="s9",
             category="b", platform="web"),
        dict(event_id="e5", ts=T0, event_type="purchase", session_id="s9", category="b",
             amount=20.0, platform="web"),
    ]
    out = user_features(_events([{"user_id": u, **r} for r in rows]),
                        window_days=30, session_gap_minutes=30)
    assert list(out.columns) == list(OUTPUT_COLUMNS) == [
        "user_id", *FEATURE_SPEC.names, "last_event_ms", "spec_version"]
    f = out.iloc[0]
    expected = {
        "recency_days": (T0 - V1 - 5 * MIN) / DAY_MS,
        "frequency": 2.0, "monetary": 20.0, "avg_order_value": 20.0,
        "events_per_session": 2.5, "session_duration": (300 + 120) / 2,
        "dwell_mean": 20.0, "dwell_variance": 100.0,
        # 3 distinct transitions, each once
        "path_complexity": math.log2(3),
        "adoption_breadth": 4 / 8, "content_breadth": 2.0,
        "search_ratio": 0.2, "cart_ratio": 0.2, "purchase_ratio": 0.2,
        "prime_time_share": 3 / 5,  # visit 2 at ~19:00 UTC
        "mobile_share": 0.4, "top_category_share": 3 / 4, "active_days": 2.0,
        "engagement_trend": (3 - 2) / (3 + 2),  # 3 events in the last 7 days, 2 before
    }
    for name, value in expected.items():
        assert f[name] == pytest.approx(value, rel=1e-12), name
    assert f["last_event_ms"] == T0 and f["spec_version"] == FEATURE_SPEC.version


@pytest.mark.spark
def test_batch_command_output(spark: Any, tmp_path: Path) -> None:
    log = generate(GeneratorConfig(users=15, events=600, seed=5, malformed_rate=0.02,
                                   duplicate_rate=0.02, late_rate=0.02))
    path = tmp_path / "events.jsonl.gz"
    log.write_jsonl(path)
    out = tmp_path / "features.parquet"
    n = write_features(batch_features(spark, path), out)
    pdf = pd.read_parquet(out)
    assert n == len(pdf) == len(log.truth)
    assert list(pdf.columns) == ["user_id", *FEATURE_SPEC.names, "last_event_ms",
                                 "spec_version"]
    assert all(str(pdf[name].dtype) == "float64" for name in FEATURE_SPEC.names)
    # last_event_ms is each user's newest accepted (valid, not late) event time
    newest: dict[str, int] = {}
    for value, kind in zip(log.values, log.kinds, strict=True):
        if kind in ("valid", "duplicate"):
            ev = orjson.loads(value)
            ts = ev["ts"] if isinstance(ev["ts"], int) else int(pd.Timestamp(ev["ts"]).value
                                                                 // 1_000_000)
            newest[ev["user_id"]] = max(newest.get(ev["user_id"], 0), ts)
    assert dict(zip(pdf["user_id"], pdf["last_event_ms"], strict=True)) == newest
    assert compute_features_pandas(spark, path).equals(pdf)
