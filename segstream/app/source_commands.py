"""Commands that put events into Kafka: ``generate`` (synthetic) and ``replay`` (a file)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from segstream.sources.personas import DRIFT_MOVE_SHARE


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("replay")(replay)


def _progress() -> Progress:
    from segstream.app.console import console

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeRemainingColumn(), console=console)


def generate(
    users: Annotated[int, typer.Option(help="Number of synthetic users.")] = 1000,
    events: Annotated[int, typer.Option(help="Valid events to generate (extras come on top).")
                      ] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same log.")
                    ] = 42,
    start: Annotated[str, typer.Option(help="Event time of the start (ISO-8601).")
                     ] = "2026-10-01T00:00:00Z",
    days: Annotated[float, typer.Option(help="Event-time span in days.")] = 30.0,
    drift_at: Annotated[float | None, typer.Option(
        help="Fraction of the span where behaviour drifts (persona moves, more mobile).")] = None,
    drift_share: Annotated[float, typer.Option(
        help="At the drift, the share of power users, casual browsers and binge viewers "
             "that move to another persona.")] = DRIFT_MOVE_SHARE,
    malformed_rate: Annotated[float, typer.Option(help="Share of malformed records added.")
                              ] = 0.0,
    duplicate_rate: Annotated[float, typer.Option(help="Share of events resent verbatim.")
                              ] = 0.0,
    late_rate: Annotated[float, typer.Option(help="Share of events arriving 2 h late.")] = 0.0,
    topic: Annotated[str | None, typer.Option(help="Send to this Kafka topic.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write JSON lines here (.gz ok).")] = None,
    truth: Annotated[Path | None, typer.Option(
        help="Write user_id,persona,persona_after_drift CSV here.")] = None,
) -> None:
    """Generate synthetic behavioural events from seven personas.

    Exactly one of --topic and --out. Example:

        segstream generate --users 1000 --events 100000 --topic events --truth truth.csv
    """
    from segstream.app.console import console, fail, load_settings
    from segstream.sources.generator import GeneratorConfig, stream
    from segstream.sources.generator import generate as run

    if (topic is None) == (out is None):
        raise fail("give exactly one of --topic (send to Kafka) or --out (write a file)", 2)
    try:
        cfg = GeneratorConfig(users=users, events=events, seed=seed, start=start, days=days,
                              drift_at=drift_at, drift_share=drift_share,
                              malformed_rate=malformed_rate,
                              duplicate_rate=duplicate_rate, late_rate=late_rate)
    except ValueError as exc:
        raise fail(str(exc), 2) from exc
    settings = load_settings()
    t0 = time.monotonic()
    if out:
        with console.status(f"generating {events:,} events for {users:,} users..."):
            log = run(cfg)
        log.write_jsonl(out)
        if truth:
            log.write_truth(truth)
        console.print(f"wrote {len(log.values):,} records to {out} "
                      f"in {time.monotonic() - t0:.1f} s")
        return
    assert topic is not None
    from segstream.adapters.endpoints import StackError, kafka_address
    from segstream.adapters.kafka import KafkaUnavailable, Producer

    try:
        producer = Producer(kafka_address(settings))
    except StackError as exc:
        raise fail(str(exc)) from exc
    with console.status(f"planning {events:,} events for {users:,} users..."):
        log, records = stream(cfg)
    if truth:
        log.write_truth(truth)
    kinds = dict.fromkeys(("valid", "duplicate", "late", "malformed"), 0)
    with _progress() as bar:
        task = bar.add_task(f"-> {topic}", total=events)
        for key, value, kind in records:  # encoded while earlier records are sent
            producer.send(topic, value, key=key)
            kinds[kind] += 1
            if kind == "valid" and kinds["valid"] % 5000 == 0:
                bar.advance(task, 5000)
        try:
            producer.flush()
        except KafkaUnavailable as exc:
            raise fail(str(exc)) from exc
        bar.update(task, completed=events)
    seconds = time.monotonic() - t0
    total = sum(kinds.values())
    console.print(
        f"sent {total:,} records to {topic} "
        f"({', '.join(f'{v:,} {k}' for k, v in kinds.items())}) in {seconds:.1f} s "
        f"({total / max(seconds, 1e-9):,.0f} records/s, generation included)"
    )


def replay(
    file: Annotated[Path, typer.Argument(help="Event log: CSV, JSON lines or Parquet (.gz ok).")],
    format: Annotated[str | None, typer.Option(
        "--format", help="csv | jsonl | parquet (default: from the file name).")] = None,
    map: Annotated[list[str] | None, typer.Option(
        "--map", help="FIELD=COLUMN, repeatable: --map user_id=CustomerID --map ts=Date")] = None,
    event_type: Annotated[str | None, typer.Option(
        help="A constant event_type for every row (e.g. purchase).")] = None,
    ts_format: Annotated[str | None, typer.Option(
        help="strptime format of the ts column, e.g. '%d/%m/%Y %H:%M' (default: ISO or epoch).")
    ] = None,
    speed: Annotated[float | None, typer.Option(
        help="Replay at this multiple of event time (60 = an hour per minute).")] = None,
    max_speed: Annotated[bool, typer.Option("--max", help="As fast as possible (default).")
                         ] = False,
    topic: Annotated[str | None, typer.Option(help="Target topic (default: the events topic).")
                     ] = None,
) -> None:
    """Replay any event log into Kafka in event-time order, keyed by user.

    Rows that fail the event contract go to the dead-letter topic with their reason
    and are counted in the summary; event types and platforms the feature vocabulary
    does not recognise are counted too (SEGSTREAM_VOCAB_* settings map them). Example,
    a 3-column purchases CSV with yyyymmdd dates:

        segstream replay sales.csv --map user_id=customer --map ts=date \\
            --map amount=total --event-type purchase --ts-format %Y%m%d
    """
    from segstream.adapters.dead_letters import DeadLetterStore
    from segstream.adapters.endpoints import StackError, kafka_address
    from segstream.adapters.kafka import KafkaUnavailable, Producer
    from segstream.app.console import console, fail, load_settings
    from segstream.sources.replay import (
        Recognised,
        ReplayError,
        detect_format,
        make_mapper,
        parse_mapping,
        read_rows,
    )
    from segstream.sources.replay import replay as run

    if speed is not None and max_speed:
        raise fail("give --speed or --max, not both", 2)
    if speed is not None and speed <= 0:
        raise fail(f"--speed must be positive, got {speed}", 2)
    settings = load_settings()
    try:
        fmt = detect_format(file) if format is None else format
        if fmt not in ("csv", "jsonl", "parquet"):
            raise ReplayError(f"--format {fmt!r}: use csv, jsonl or parquet")
        mapping = parse_mapping(map or [])
        mapper = make_mapper(mapping, event_type, ts_format)
        recognised = Recognised.of(settings.feature_params().vocabulary,
                                   settings.vocab_desktop_platforms)
        rows = read_rows(file, fmt)  # type: ignore[arg-type]
        producer = Producer(kafka_address(settings))
    except (ReplayError, StackError) as exc:
        raise fail(str(exc), 2) from exc
    target = topic or settings.topic_events
    with _progress() as bar:
        task = bar.add_task(f"{file.name} -> {target}", total=None)
        try:
            summary = run(rows, mapper, producer, topic=target, dlq_topic=settings.topic_dlq,
                          dead_letters=DeadLetterStore(settings.dead_letter_dir),
                          source=f"replay:{file.name}", speed=speed,
                          progress=lambda n: bar.advance(task, n), recognised=recognised)
        except (ReplayError, KafkaUnavailable) as exc:
            raise fail(str(exc)) from exc
    console.print(f"read {summary.rows:,} rows, sent {summary.sent:,} events to {target} "
                  f"in {summary.seconds:.1f} s")
    if summary.rejected:
        table = Table("reason", "rows", "first example", title=f"rejected -> {settings.topic_dlq}")
        for reason, count in summary.rejected.most_common():
            table.add_row(reason, f"{count:,}", summary.examples[reason])
        console.print(table)
    if summary.unrecognised:
        effect = {"event_type": "activity only, no ratio; map it: SEGSTREAM_VOCAB_EVENT_TYPES",
                  "platform": "not mobile; name it in SEGSTREAM_VOCAB_MOBILE_PLATFORMS or "
                              "SEGSTREAM_VOCAB_DESKTOP_PLATFORMS"}
        table = Table("field", "events", "distinct", "most common", "counted as",
                      title="sent, but not recognised by the feature vocabulary")
        for name, u in summary.unrecognised.items():
            table.add_row(name, f"{u.events:,}", f"{len(u.values):,}", u.examples(),
                          effect[name])
        console.print(table)
