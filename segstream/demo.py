"""``segstream demo``: the whole pipeline on the embedded defaults, step by step.

Each stage adds its step to ``STEPS`` (in order); the demo runs them and prints
what each produced. Steps are idempotent: running the demo twice is fine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from segstream.config import Settings

Step = Callable[[Settings, Console], None]


def topic_counts(settings: Settings) -> dict[str, int]:
    from segstream.kafka import count_records
    from segstream.stack import kafka_address

    bootstrap = kafka_address(settings)
    names = [settings.topic_events, settings.topic_dlq, settings.topic_features,
             settings.topic_segment_changes]
    return {name: count_records(bootstrap, name) for name in names}


def step_stack(settings: Settings, console: Console) -> None:
    from segstream.stack import up

    console.rule("1. local stack")
    _, done = up(settings)
    for line in done:
        console.print(f"  {line}")


def step_events(settings: Settings, console: Console) -> None:
    from segstream.generator import GeneratorConfig, stream
    from segstream.kafka import Producer
    from segstream.stack import kafka_address

    console.rule("2. synthetic events -> Kafka")
    before = topic_counts(settings)
    producer = Producer(kafka_address(settings))
    kinds: Counter[str] = Counter()
    with console.status(f"generating 100,000 events for 1,000 users (seed 42) -> "
                        f"{settings.topic_events}..."):
        _, records = stream(GeneratorConfig(users=1000, events=100_000, seed=42,
                                            malformed_rate=0.005, duplicate_rate=0.005,
                                            late_rate=0.002))
        for key, value, kind in records:
            producer.send(settings.topic_events, value, key=key)
            kinds[kind] += 1
        producer.flush()
    after = topic_counts(settings)
    table = Table("topic", "records before", "arrived", "records now",
                  title="what arrived (counted on the broker)")
    for name, now in after.items():
        table.add_row(name, f"{before[name]:,}", f"{now - before[name]:+,}", f"{now:,}")
    console.print(table)
    console.print(f"  mixed in: {kinds['malformed']:,} malformed, "
                  f"{kinds['duplicate']:,} duplicate, {kinds['late']:,} late")


def step_training(settings: Settings, console: Console) -> None:
    """Train on the streamed features (Parquet history, else the features topic),
    register in the MLflow registry, promote through the gates, print the segments."""
    from segstream.stack import endpoints
    from training.cli import load_table, segment_table, train_and_publish

    console.rule("training -> MLflow registry (champion)")
    history = settings.history_dir
    source = None
    if history.exists() and any(history.rglob("*.parquet")):
        source = str(history)
    else:
        topic = settings.topic_features
        if count_features(endpoints(settings).kafka_bootstrap, topic) > 0:
            source = "features-topic"
    if source is None:
        console.print("  no features yet (neither Parquet history nor the features topic); "
                      "run the streaming step first (`segstream stream`)")
        return
    table = load_table(settings, source)
    result = train_and_publish(settings, table, "auto", promote=True, out=console)
    console.print(segment_table(result.model, f"model version {result.version} "
                                f"({len(table):,} users from {source})"))
    console.print(f"  gates: {result.gate.summary()}; champion is version "
                  f"{result.version if result.promoted else '(unchanged)'}")


def count_features(bootstrap: str, topic: str) -> int:
    from segstream.kafka import count_records

    try:
        return count_records(bootstrap, topic)
    except Exception:  # topic missing: nothing streamed yet
        return 0


def step_stream(settings: Settings, console: Console) -> None:
    from streaming.demo import step_stream as stream

    stream(settings, console)


def step_serve(settings: Settings, console: Console) -> None:
    from serving.demo import step_serve as serve

    serve(settings, console)


STEPS: list[Step] = [step_stack, step_events, step_stream, step_training, step_serve]


def run_demo(settings: Settings, console: Console) -> None:
    for step in STEPS:
        step(settings, console)
    console.rule("done")
    console.print("The stack keeps running; stop it with `segstream stack down`.")
