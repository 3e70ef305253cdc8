"""The synthetic event generator: deterministic, distinct personas, exact mix of records."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from segstream.core.events import Rejection, validate_event
from segstream.sources.generator import GeneratorConfig, generate, iter_jsonl
from segstream.sources.personas import DRIFT_MOVES, PERSONAS


@pytest.fixture(scope="module")
def log():  # type: ignore[no-untyped-def]
    return generate(GeneratorConfig(users=300, events=30_000, seed=3, malformed_rate=0.02,
                                    duplicate_rate=0.02, late_rate=0.01))


def test_same_seed_same_log_other_seed_other_log() -> None:
    cfg = GeneratorConfig(users=50, events=2000, seed=11)
    assert generate(cfg).values == generate(cfg).values
    assert generate(GeneratorConfig(users=50, events=2000, seed=12)).values != generate(cfg).values


def test_exact_count_of_valid_events_and_kinds_match_validation(log) -> None:  # type: ignore[no-untyped-def]
    assert log.kinds.count("valid") == 30_000
    for value, kind in zip(log.values, log.kinds, strict=True):
        result = validate_event(value, now_ms=log.end_ms)
        assert isinstance(result, Rejection) == (kind == "malformed"), (kind, value)
    for kind, rate in (("malformed", 0.02), ("duplicate", 0.02), ("late", 0.01)):
        assert abs(log.kinds.count(kind) / 30_000 - rate) < rate * 0.25


def test_duplicates_are_byte_identical_resends(log) -> None:  # type: ignore[no-untyped-def]
    valid = set(v for v, k in zip(log.values, log.kinds, strict=True) if k == "valid")
    dups = [v for v, k in zip(log.values, log.kinds, strict=True) if k == "duplicate"]
    assert dups and all(d in valid for d in dups)


def test_arrival_is_event_time_order_except_late_records(log) -> None:  # type: ignore[no-untyped-def]
    ts_valid = []
    for value, kind in zip(log.values, log.kinds, strict=True):
        ev = validate_event(value, now_ms=log.end_ms)
        if kind == "valid":
            assert isinstance(ev, dict)
            ts_valid.append(ev["ts"])
        elif kind == "late":
            assert isinstance(ev, dict)
            assert ev["ts"] <= ts_valid[-1] - 2 * 3600 * 1000 + 1
    assert ts_valid == sorted(ts_valid)


def test_every_persona_appears_and_behaves_distinctly() -> None:
    log = generate(GeneratorConfig(users=700, events=60_000, seed=5))
    by_persona: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for value in log.values:
        ev = validate_event(value, now_ms=log.end_ms)
        assert isinstance(ev, dict)
        stats = by_persona[log.truth[ev["user_id"]].persona]
        stats["purchase"].append(ev["event_type"] == "purchase")
        stats["search"].append(ev["event_type"] == "search")
        stats["play"].append(ev["event_type"] == "play")
        if ev["dwell_ms"] is not None:
            stats["dwell"].append(ev["dwell_ms"])
        if ev["amount"] is not None:
            stats["amount"].append(ev["amount"])
    assert set(by_persona) == {p.name for p in PERSONAS}
    mean = {p: {k: float(np.mean(v)) for k, v in s.items()} for p, s in by_persona.items()}
    assert mean["bargain_hunter"]["search"] > 2 * mean["power_user"]["search"]
    assert mean["binge_viewer"]["play"] > 0.5
    assert mean["binge_viewer"]["dwell"] > 10 * mean["casual_browser"]["dwell"]
    assert mean["high_spend_loyalist"]["amount"] > 5 * mean["bargain_hunter"]["amount"]
    assert mean["casual_browser"]["purchase"] == 0.0


def test_drift_moves_users_between_personas() -> None:
    log = generate(GeneratorConfig(users=400, events=20_000, seed=9, drift_at=0.5))
    moved = [t for t in log.truth.values() if t.persona != t.persona_after_drift]
    assert moved, "drift moved nobody"
    assert all(DRIFT_MOVES[t.persona] == t.persona_after_drift for t in moved)
    assert log.drift_ms == log.start_ms + (log.end_ms - log.start_ms) // 2


def test_drift_share_sets_how_many_users_of_a_moving_persona_move() -> None:
    def moved_share(share: float) -> float:
        log = generate(GeneratorConfig(users=600, events=6000, seed=9, drift_at=0.5,
                                       drift_share=share))
        movable = [t for t in log.truth.values() if t.persona in DRIFT_MOVES]
        return sum(t.persona != t.persona_after_drift for t in movable) / len(movable)

    assert moved_share(1.0) == 1.0 and moved_share(0.0) == 0.0
    assert 0.35 < moved_share(0.5) < 0.65


def test_files_round_trip(tmp_path: Path, log) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "events.jsonl.gz"
    log.write_jsonl(out)
    assert list(iter_jsonl(out)) == log.values
    truth = tmp_path / "truth.csv"
    log.write_truth(truth)
    lines = truth.read_text().splitlines()
    assert lines[0] == "user_id,persona,persona_after_drift,stops_ms" and len(lines) == 301


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"users": 0}, "users >= 1"), ({"malformed_rate": 0.9}, "malformed_rate"),
     ({"drift_at": 1.5}, "drift_at"), ({"days": 0}, "days"),
     ({"days": 0.5}, "at least 1"), ({"drift_share": 1.5}, "drift_share")],
)
def test_bad_config_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**kwargs)  # type: ignore[arg-type]


def test_churners_fall_silent_after_their_stop_time() -> None:
    log = generate(GeneratorConfig(users=200, events=20_000, seed=5, churn_share=0.2))
    stops = {u: t.stops_ms for u, t in log.truth.items() if t.stops_ms is not None}
    assert 20 < len(stops) < 60
    last: dict[str, int] = {}
    for value in log.values:
        ev = validate_event(value)
        assert not isinstance(ev, Rejection)
        last[ev["user_id"]] = max(last.get(ev["user_id"], 0), ev["ts"])
    churned = [u for u in stops if u in last]
    assert churned and all(last[u] <= stops[u] for u in churned)
    # the others keep coming until the end
    assert max(last[u] for u in last if u not in stops) > max(stops.values())
