"""Replay an event log (CSV, JSON lines or Parquet; ``.gz`` ok) into Kafka.

read → map columns to contract fields → validate → sort by event time → send.
Accepted events are sent normalised (epoch-ms ``ts``, an ``event_id``), keyed by
user id. Rejected rows go to the dead-letter topic with their reason, and the
summary counts them by reason, so nothing is dropped silently.

The summary also reports, per field, the values of accepted events that the
feature vocabulary does not recognise (:class:`Recognised`): an ``event_type`` that
is neither a canonical type nor an alias of one (it counts as activity and feeds no
ratio), a ``platform`` that is neither mobile nor desktop (it counts as not mobile).
Such events are sent all the same; the report says what to map.
"""

from __future__ import annotations

import csv
import gzip
import io
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from segstream.adapters.dead_letters import DeadLetter, DeadLetterStore, bounded_records
from segstream.adapters.kafka import Producer
from segstream.core.aggregates import Vocabulary
from segstream.core.contract import (
    DEFAULT_DESKTOP_PLATFORMS,
    EVENT_FIELDS,
    MAX_RECORD_BYTES,
    OPTIONAL_NUMBER_FIELDS,
)
from segstream.core.events import Rejection, validate_event

Format = Literal["csv", "jsonl", "parquet"]


class ReplayError(ValueError):
    """The replay cannot start: bad file, format or mapping."""


#: The largest CSV field read (Python's default, 128 KiB, fails the whole file on one long
#: cell). A row with a longer field stops the replay with its line number.
MAX_CSV_FIELD_BYTES = 64 * 1024 * 1024
#: Distinct unrecognised values counted per field (more are counted in the total only).
MAX_TRACKED_VALUES = 1000


@dataclass(frozen=True)
class Recognised:
    """What the feature vocabulary recognises, per field (trimmed, lower case)."""

    event_types: frozenset[str]
    platforms: frozenset[str]

    @classmethod
    def of(cls, vocabulary: Vocabulary,
           desktop_platforms: Iterable[str] = DEFAULT_DESKTOP_PLATFORMS) -> Recognised:
        """From ``Settings.feature_params().vocabulary`` and ``vocab_desktop_platforms``."""
        return cls(frozenset(vocabulary.type_codes()),
                   frozenset(p.strip().lower() for p in (*vocabulary.mobile_platforms,
                                                         *desktop_platforms)))

    def unknown(self, event: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """``(field, value)`` of each value of ``event`` not recognised."""
        if event["event_type"].strip().lower() not in self.event_types:
            yield "event_type", event["event_type"]
        platform = event.get("platform")
        if platform is not None and platform.strip().lower() not in self.platforms:
            yield "platform", platform


@dataclass
class Unrecognised:
    """Accepted events whose value of one field the vocabulary does not recognise."""

    events: int = 0
    values: Counter[str] = field(default_factory=Counter)  # at most MAX_TRACKED_VALUES

    def add(self, value: str) -> None:
        self.events += 1
        if value in self.values or len(self.values) < MAX_TRACKED_VALUES:
            self.values[value] += 1

    def examples(self, n: int = 5) -> str:
        return ", ".join(f"{v!r} ({c:,})" for v, c in self.values.most_common(n))


@dataclass
class ReplaySummary:
    rows: int = 0
    sent: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first detail
    unrecognised: dict[str, Unrecognised] = field(default_factory=dict)  # by field
    seconds: float = 0.0


def detect_format(path: Path) -> Format:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".csv", ".tsv"):
        return "csv"
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if ext == ".parquet":
        return "parquet"
    raise ReplayError(f"cannot tell the format of {path.name}; pass --format csv|jsonl|parquet")


def read_rows(path: Path, fmt: Format) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise ReplayError(f"{path} does not exist")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=50_000):
            yield from batch.to_pylist()
        return
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as raw:  # type: ignore[operator]
        if fmt == "csv":
            text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
            csv.field_size_limit(MAX_CSV_FIELD_BYTES)
            reader = csv.DictReader(text)
            try:
                yield from reader
            except csv.Error as exc:
                raise ReplayError(
                    f"{path}: line {reader.line_num}: {exc}; a field over "
                    f"{MAX_CSV_FIELD_BYTES // 2**20} MiB is not an event field: remove "
                    "that column or row") from exc
        else:
            for n, line in enumerate(raw, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    obj = {"__invalid_json__": line.decode("utf-8", "replace"), "__line__": n}
                yield obj if isinstance(obj, dict) else {"__not_object__": obj}


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``["user_id=Customer ID", "ts=Date"]`` → ``{"user_id": "Customer ID", "ts": "Date"}``."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep or not name or not column:
            raise ReplayError(f"--map {pair!r}: expected FIELD=COLUMN, e.g. user_id=CustomerID")
        if name not in EVENT_FIELDS:
            raise ReplayError(f"--map {pair!r}: {name!r} is not an event field; "
                              f"fields are {', '.join(EVENT_FIELDS)}")
        mapping[name] = column
    return mapping


def make_mapper(mapping: Mapping[str, str], event_type: str | None,
                ts_format: str | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Build a function from a source row to a contract-shaped dict (not yet validated)."""

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in EVENT_FIELDS:
            column = mapping.get(name, name)
            value = row.get(column)
            if value is None or value == "":
                continue
            out[name] = value
        if event_type is not None:
            out["event_type"] = event_type
        if ts_format and isinstance(out.get("ts"), str):
            with suppress(ValueError):  # left as text: the validator says bad_timestamp
                dt = datetime.strptime(out["ts"], ts_format)
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=UTC)
                # ISO text, not epoch ms: a number's unit is read from its magnitude,
                # which cannot tell ms of 1970-73 from seconds
                out["ts"] = dt.isoformat()
        for name in OPTIONAL_NUMBER_FIELDS:
            value = out.get(name)
            if isinstance(value, str):
                with suppress(ValueError):  # else the validator names the field
                    out[name] = float(value)
        return out

    return convert


def replay(
    rows: Iterator[dict[str, Any]],
    mapper: Callable[[dict[str, Any]], dict[str, Any]],
    producer: Producer,
    *,
    topic: str,
    dlq_topic: str,
    dead_letters: DeadLetterStore,
    source: str,
    speed: float | None = None,
    progress: Callable[[int], None] | None = None,
    now_ms: int | None = None,
    recognised: Recognised | None = None,
) -> ReplaySummary:
    """Validate, order by event time and send; rejects go to ``dlq_topic``, bounded
    (``segstream.adapters.dead_letters``: an oversized one's full bytes go to ``dead_letters``).

    ``speed`` None sends as fast as possible; ``speed=60`` replays an hour of event
    time per minute. ``recognised`` (default: the default vocabulary) decides what
    ``summary.unrecognised`` reports.
    """
    known = recognised or Recognised.of(Vocabulary())
    started = time.monotonic()
    summary = ReplaySummary()
    accepted: list[tuple[int, bytes, bytes]] = []  # (ts, key, record)
    for n, row in enumerate(rows, 1):
        summary.rows += 1
        if "__invalid_json__" in row or "__not_object__" in row:
            result: dict[str, Any] | Rejection = Rejection(
                "invalid_json" if "__invalid_json__" in row else "not_an_object", None,
                "line is not a JSON object")
        else:
            result = validate_event(mapper(row), now_ms=now_ms)
        if not isinstance(result, Rejection):
            body = _body(result)
            if len(body) > MAX_RECORD_BYTES:  # the stream bounds the record it reads
                result = Rejection("record_too_large", None,
                                   f"{len(body)} bytes as sent, the limit is {MAX_RECORD_BYTES}")
        if isinstance(result, Rejection):
            summary.rejected[result.reason] += 1
            summary.examples.setdefault(result.reason, f"row {n}: {result.message()}")
            letter = DeadLetter(None, orjson.dumps(row, default=str), result.reason,
                                result.message(), f"{source}:{n}")
            for rec in bounded_records([letter], dead_letters,
                                       f"replay/{_file_name(source)}/row={n:09d}.parquet"):
                producer.send(dlq_topic, rec.value, key=rec.key, headers=rec.headers)
        else:
            accepted.append((result["ts"], result["user_id"].encode(), body))
            for name, value in known.unknown(result):
                summary.unrecognised.setdefault(name, Unrecognised()).add(value)
    accepted.sort(key=lambda e: e[0])  # event-time order; stable for equal times
    first_ts = accepted[0][0] if accepted else 0
    wall0 = time.monotonic()
    for i, (ts, key, body) in enumerate(accepted):
        if speed:
            due = wall0 + (ts - first_ts) / 1000 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.send(topic, body, key=key)
        summary.sent += 1
        if progress and i % 1000 == 999:
            progress(1000)
    if progress:
        progress(summary.sent % 1000)
    producer.flush()
    summary.seconds = time.monotonic() - started
    return summary


def _file_name(source: str) -> str:
    """``source`` as one safe path component of the dead-letter store."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in source)[:120]


def _body(event: Mapping[str, Any]) -> bytes:
    """The record sent for a normalised event: its set fields, ``properties`` as the JSON
    object it is (the validator keeps it serialised; sent as a string, the stream would
    reject it as ``wrong_type``)."""
    body = {k: v for k, v in event.items() if v is not None}
    if "properties" in body:
        body["properties"] = orjson.Fragment(body["properties"])
    return orjson.dumps(body)
