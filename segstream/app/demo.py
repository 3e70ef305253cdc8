"""``segstream demo``: the whole pipeline on the embedded defaults, step by step.

The generated log covers the 30 days up to now. It arrives in two parts, so the demo
can show time passing: the first 25 days are streamed, a model is trained as of their
end and the change detector records everyone's segment; then the last 5 days arrive,
and users who stopped coming change segment *with no new event* (their features aged),
and the change reaches a local webhook receiver. Half a day after training, behaviour
drifts (power users decay, browsers hunt bargains, more mobile); the demo shows when the
update's drift check would have seen it. The steps share a :class:`Demo`
context; each prints what it produced, and the last prints a summary.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from segstream.config import Settings
from segstream.core.contract import DAY_MS

LATE_DAYS = 5  # the part of the log that arrives after the model is trained
DRIFT_DAY = 25.5  # when behaviour drifts (generator drift_at), after training at day 25


@dataclass
class Demo:
    settings: Settings
    console: Console
    later: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    truth: dict[str, str] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    summary: dict[str, Any] = field(default_factory=dict)
    day0_ms: int = 0  # the log's start
    cut_ms: int = 0  # the end of day 25: the training time
    drift_ms: int | None = None
    model: Any = None  # the champion trained as of day 25


Step = Callable[[Demo], None]


def topic_counts(settings: Settings) -> dict[str, int]:
    from segstream.adapters.endpoints import kafka_address
    from segstream.adapters.kafka import count_records

    bootstrap = kafka_address(settings)
    names = [settings.topic_events, settings.topic_dlq, settings.topic_features,
             settings.topic_segment_changes]
    return {name: count_records(bootstrap, name) for name in names}


def step_stack(demo: Demo) -> None:
    """A fresh stack: the embedded broker keeps no log across restarts, so the streaming
    checkpoint and history of an earlier demo would point at offsets that are gone; and a
    fresh embedded registry, so that an earlier demo's champion (other users, another
    time) is not the model this one is judged against."""
    import shutil

    from segstream.sources.stack import down, up

    demo.console.rule("1. local stack (fresh)")
    settings = demo.settings
    for line in down(settings):
        demo.console.print(f"  earlier demo: {line}")
    olds = [settings.checkpoint_dir, settings.history_dir]
    if settings.registry_uri is None:  # the embedded one only: a configured one is not ours
        olds.append(settings.data_dir / "mlflow")
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)
    _, done = up(settings)
    for line in done:
        demo.console.print(f"  {line}")


def _send(demo: Demo, records: list[tuple[bytes | None, bytes]], what: str,
          counts: bool = True) -> None:
    from segstream.adapters.endpoints import kafka_address
    from segstream.adapters.kafka import Producer

    before = topic_counts(demo.settings) if counts else {}
    producer = Producer(kafka_address(demo.settings))
    for key, value in records:
        producer.send(demo.settings.topic_events, value, key=key)
    producer.flush()
    if not counts:
        demo.console.print(f"  {what} -> {demo.settings.topic_events}")
        return
    after = topic_counts(demo.settings)
    table = Table("topic", "records before", "arrived", "records now",
                  title=f"{what} (counted on the broker)")
    for name, now in after.items():
        table.add_row(name, f"{before[name]:,}", f"{now - before[name]:+,}", f"{now:,}")
    demo.console.print(table)


def step_events(demo: Demo) -> None:
    """Generate 30 days of events up to now; send the first 25 days."""
    from segstream.sources.generator import GeneratorConfig, generate

    demo.console.rule("2. synthetic events (the first 25 of 30 days) -> Kafka")
    now_ms = int(time.time() * 1000) // 3_600_000 * 3_600_000
    start = datetime.fromtimestamp((now_ms - 30 * DAY_MS) / 1000, UTC).isoformat()
    with demo.console.status("generating 100,000 events for 1,000 users (seed 42)..."):
        log = generate(GeneratorConfig(users=1000, events=100_000, seed=42, start=start,
                                       malformed_rate=0.005, duplicate_rate=0.005,
                                       late_rate=0.002, churn_share=0.12,
                                       drift_at=DRIFT_DAY / 30, drift_share=1.0))
    cut_ms = now_ms - LATE_DAYS * DAY_MS
    records = list(zip(log.keys, log.values, strict=True))
    cut = first_at_or_after(records, cut_ms)
    demo.day0_ms, demo.cut_ms, demo.drift_ms = log.start_ms, cut_ms, log.drift_ms
    demo.kinds.update(log.kinds)
    demo.truth = {u: t.persona for u, t in log.truth.items()}
    demo.later = records[cut:]
    _send(demo, records[:cut], f"days 1-25: {cut:,} records")
    demo.console.print(f"  mixed in: {demo.kinds['malformed']:,} malformed, "
                       f"{demo.kinds['duplicate']:,} duplicate, {demo.kinds['late']:,} late; "
                       f"{sum(t.stops_ms is not None for t in log.truth.values())} users "
                       "stop coming at some point (churners); behaviour drifts at day "
                       f"{DRIFT_DAY}")
    demo.summary["events in"] = len(log.values)


def first_at_or_after(records: list[tuple[bytes | None, bytes]], t_ms: int, start: int = 0
                      ) -> int:
    """Index of the first valid record at or after ``t_ms``, looking from ``start``
    (arrival order is event-time order, but for late records), else ``len(records)``."""
    from segstream.core.events import Rejection, validate_event

    for i in range(start, len(records)):
        value = records[i][1]
        ev = validate_event(value)
        if not isinstance(ev, Rejection) and ev["ts"] >= t_ms:
            return i
    return len(records)


def step_stream(demo: Demo) -> None:
    from segstream.app.demo_streaming import step_stream as stream

    stream(demo.settings, demo.console)


def step_training(demo: Demo) -> None:
    """Train on the streamed aggregates (a snapshot as of the stream time), register in
    the MLflow registry, promote through the gates, print the segments and the ARI."""
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from segstream.adapters.registry import Registry
    from segstream.app.train_commands import load_table, segment_table, train_and_publish

    settings, console = demo.settings, demo.console
    console.rule("training on a snapshot of every user as of the stream time -> MLflow")
    history = settings.history_dir
    if not (history.exists() and any(history.rglob("*.parquet"))):
        console.print("  no Parquet history yet; run the streaming step first")
        return
    table = load_table(settings, str(history))
    result = train_and_publish(settings, table, "auto", promote=True, out=console)
    demo.model = result.model
    console.print(segment_table(result.model, f"model version {result.version} "
                                f"({len(table):,} users as of the end of day 25)"))
    champion = result.version if result.promoted else Registry(settings).champion_version()
    console.print(f"  gates: {result.gate.summary()}; the champion is version {champion}")
    known = np.array([u in demo.truth for u in table.user_ids])
    if known.any():
        got = result.model.assign(table.X[known]).segment_ids
        truth = [demo.truth[u] for u in table.user_ids[known]]
        demo.summary["ARI vs the generator's personas"] = round(
            float(adjusted_rand_score(truth, got)), 3)
    demo.summary["segments"] = ", ".join(
        f"{name} {p['share']:.0%}" for p, name in zip(result.model.profiles,
                                                     result.model.personas, strict=True))


#: The demo's history holds 25 days: a week's horizon leaves snapshots to train and test
#: on, and a snapshot every day gives the model enough rows. Every 3 days it had 1,580
#: training rows and lost to the RFM score on the later snapshot (ROC AUC 0.718 against
#: 0.724) in three runs of three; daily, 6,726 rows and 0.733 on the same history.
DEMO_CHURN = {"churn_horizon_days": 7.0, "churn_snapshot_every_days": 1.0}


def step_churn(demo: Demo) -> None:
    """Train the churn-risk model on snapshots of the history (label: no accepted event in
    the next 7 days), beside recency alone and the RFM score; show risk per segment."""
    from segstream.adapters.registry import RegistryError
    from segstream.app.churn_commands import evaluation_tables
    from segstream.training.churn import train_churn

    console = demo.console
    console.rule("churn risk: a second model on point-in-time snapshots -> MLflow")
    settings = demo.settings.model_copy(update=DEMO_CHURN)
    try:
        result = train_churn(settings, settings.history_dir)
    except (ValueError, RegistryError) as exc:
        console.print(f"  no churn model: {exc}")
        return
    console.print(f"  label: {result.model.label['definition']}; {len(result.train):,} "
                  f"training rows, {len(result.test):,} test rows")
    scores, _, bands = evaluation_tables(result.evaluation, f"churn version "
                                         f"{result.version}, the later snapshot")
    console.print(scores)
    console.print(bands)
    console.print(f"  gates: {result.gate.summary()}"
                  + ("; churn champion" if result.promoted else "; not promoted"))
    names = dict(zip(demo.model.segment_ids, demo.model.personas, strict=True)) if (
        demo.model is not None) else {}
    if result.segments and demo.model is not None:
        risky = max(result.segments, key=lambda r: r["mean_risk"])
        name = names.get(risky["segment_id"], risky.get("persona", "?"))
        why = _segment_reasons(demo.model, result.model, result.test.X, risky["segment_id"])
        console.print(f"  riskiest segment: {risky['segment_id']} {name}, mean risk "
                      f"{risky['mean_risk']:.2f}; its members' commonest reasons: "
                      + "; ".join(why))
        demo.summary["churn risk"] = (
            f"ROC AUC {result.evaluation.metrics['roc_auc']:.3f} on the later snapshot; "
            f"riskiest segment {risky['segment_id']} {name}: mean risk "
            f"{risky['mean_risk']:.2f}, observed churn {risky['observed']:.2f}; "
            + "; ".join(why))


def _segment_reasons(segments: Any, churn: Any, X: Any, segment_id: int, top: int = 2
                     ) -> list[str]:
    """The reasons most often among a segment's members' top reasons, each with the
    share of members that have it and one member's words."""
    from segstream.training.churn_eval import churn_by_segment

    (seg,) = churn_by_segment(churn, X, segments.assign(X).segment_ids, [segment_id], top)
    return [f"{r['text']} ({r['share']:.0%} of members)" for r in seg["reasons"]]


def step_detect_before(demo: Demo) -> None:
    from segstream.app.demo_serving import step_changes

    demo.console.rule("change detector: everyone's segment as of day 25 (stream clock)")
    step_changes(demo.settings, demo.console)


def step_later(demo: Demo) -> None:
    """The last 5 days arrive, a day at a time, each streamed before the next (so the
    history holds every user as of each day's end, for the drift step); the detector
    sees time pass."""
    from segstream.app.demo_serving import deliver_webhooks, step_changes
    from segstream.app.demo_streaming import stream_parts

    demo.console.rule(f"3. the last {LATE_DAYS} days arrive")
    later, sent = demo.later, 0

    def day(k: int) -> Callable[[], str]:
        def send() -> str:
            nonlocal sent
            end = (len(later) if k == LATE_DAYS else
                   first_at_or_after(later, demo.cut_ms + k * DAY_MS, start=sent))
            part = later[sent:end]
            _send(demo, part, f"day {25 + k}: {len(part):,} records", counts=False)
            sent = end
            return f"day {25 + k}"
        return send

    stream_parts(demo.settings, demo.console, [day(k) for k in range(1, LATE_DAYS + 1)])
    n = step_changes(demo.settings, demo.console)
    demo.summary["changes published, days 26-30"] = n
    delivered = deliver_webhooks(demo.settings, demo.console)
    demo.summary["webhooks delivered (signature checked)"] = delivered


def step_drift(demo: Demo) -> None:
    from segstream.app.demo_training import step_drift as drift

    if demo.model is None:
        return
    times = [demo.cut_ms + k * DAY_MS for k in range(1, LATE_DAYS + 1)]
    demo.summary["drift detected"] = drift(
        demo.settings, demo.console, demo.model, day0_ms=demo.day0_ms, times=times,
        injected_ms=demo.drift_ms)


def step_serve(demo: Demo) -> None:
    from segstream.app.demo_serving import step_serve as serve

    demo.summary.update(serve(demo.settings, demo.console))


def step_summary(demo: Demo) -> None:
    import redis

    from segstream.adapters.endpoints import endpoints
    from segstream.adapters.redis_keys import FEATURES_PATTERN
    from segstream.adapters.topic_reader import read_topic

    settings, console = demo.settings, demo.console
    console.rule("summary")
    reasons: Counter[str] = Counter()
    for r in read_topic(endpoints(settings).kafka_bootstrap, settings.topic_dlq):
        reasons[(r.headers.get("reason") or b"?").decode()] += 1
    table = Table("what", "value", show_header=False)
    table.add_row("events in", f"{demo.summary.pop('events in', 0):,}")
    table.add_row("dead-lettered, by reason",
                  ", ".join(f"{k} {v:,}" for k, v in reasons.most_common()) or "none")
    client = redis.Redis.from_url(endpoints(settings).redis_url)
    users = sum(1 for _ in client.scan_iter(FEATURES_PATTERN, count=1000))
    client.close()
    table.add_row("users with features (Redis)", f"{users:,}")
    for key, value in demo.summary.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


STEPS: list[Step] = [step_stack, step_events, step_stream, step_training, step_churn,
                     step_detect_before, step_later, step_drift, step_serve, step_summary]


def run_demo(settings: Settings, console: Console, *, keep_running: bool = False) -> None:
    """Run every step; stop what the demo started unless ``keep_running`` (Ctrl-C
    always stops it)."""
    from segstream.sources.stack import down

    demo = Demo(settings, console)
    try:
        for step in STEPS:
            step(demo)
    except KeyboardInterrupt:
        console.print("interrupted: stopping what the demo started")
        keep_running = False
        raise
    finally:
        if not keep_running:
            for line in down(settings):
                console.print(f"  {line}")
    console.rule("done")
    if keep_running:
        console.print("The stack and the API keep running; stop them with "
                      "`segstream stack down`.")
