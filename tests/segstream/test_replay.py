"""`segstream replay`: a 3-column CSV into Kafka; every accepted row arrives exactly once."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from segstream.cli import app
from segstream.config import Settings
from segstream.kafka import read_topic
from segstream.replay import ReplayError, make_mapper, parse_mapping, read_rows

pytestmark = pytest.mark.kafka

CSV = """customer,date,total
c1,2026-01-05 10:00,12.50
c2,2026-01-03 09:30,7
,2026-01-04 08:00,3
c3,not a date,4
c4,2026-01-06 12:00,-2
c5,2026-01-07 13:00,abc
c1,2026-01-02 18:45,99.99
c6,2026-01-08 07:15,
"""
ACCEPTED = {("c1", "2026-01-05 10:00", 12.5), ("c2", "2026-01-03 09:30", 7.0),
            ("c1", "2026-01-02 18:45", 99.99), ("c6", "2026-01-08 07:15", None)}


def test_csv_replay_sends_each_accepted_row_once_and_dead_letters_the_rest(
    tmp_path: Path, settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "sales.csv.gz"
    with gzip.open(src, "wt") as f:
        f.write(CSV)
    events, dlq = topic_factory("events"), topic_factory("dlq")
    settings = settings_factory(topic_dlq=dlq)
    for name, value in (("KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
                        ("REDIS_URL", settings.redis_url), ("TOPIC_DLQ", dlq),
                        ("DATA_DIR", str(settings.data_dir))):
        monkeypatch.setenv(f"SEGSTREAM_{name}", str(value))

    result = CliRunner().invoke(app, [
        "replay", str(src), "--map", "user_id=customer", "--map", "ts=date",
        "--map", "amount=total", "--event-type", "purchase", "--topic", events,
    ])
    assert result.exit_code == 0, result.output
    assert "sent 4 events" in result.output
    for reason in ("missing_field", "bad_timestamp", "negative_number", "wrong_type"):
        assert reason in result.output

    sent = list(read_topic(settings.kafka_bootstrap or "", events))
    bodies = [orjson.loads(r.value or b"") for r in sent]
    assert len(bodies) == 4  # exactly once: no row twice, none missing
    from segstream.events import parse_timestamp

    expected = {(u, parse_timestamp(d.replace(" ", "T") + ":00Z"), a) for u, d, a in ACCEPTED}
    assert {(b["user_id"], b["ts"], b.get("amount")) for b in bodies} == expected
    assert all(b["event_type"] == "purchase" and b["event_id"] for b in bodies)
    assert all(r.key == b["user_id"].encode() for r, b in zip(sent, bodies, strict=True))
    for partition in {r.partition for r in sent}:  # event-time order within a partition
        ts = [b["ts"] for r, b in zip(sent, bodies, strict=True) if r.partition == partition]
        assert ts == sorted(ts)

    rejected = list(read_topic(settings.kafka_bootstrap or "", dlq))
    reasons = Counter(r.headers["reason"].decode() for r in rejected)
    assert reasons == Counter({"missing_field": 1, "bad_timestamp": 1, "negative_number": 1,
                               "wrong_type": 1})
    assert all(r.headers["source"].startswith(b"replay:sales.csv.gz:") for r in rejected)
    assert {orjson.loads(r.value or b"")["customer"] for r in rejected} == {"", "c3", "c4", "c5"}


def test_jsonl_and_ts_format(tmp_path: Path) -> None:
    src = tmp_path / "e.jsonl"
    src.write_text('{"uid":"a","when":"05/01/2026 10:00","kind":"play"}\nnot json\n[1]\n')
    rows = list(read_rows(src, "jsonl"))
    mapper = make_mapper(parse_mapping(["user_id=uid", "ts=when", "event_type=kind"]), None,
                         "%d/%m/%Y %H:%M")
    assert mapper(rows[0]) == {"user_id": "a", "ts": 1_767_607_200_000, "event_type": "play"}
    assert "__invalid_json__" in rows[1] and "__not_object__" in rows[2]


@pytest.mark.parametrize(("pairs", "message"), [
    (["user_id"], "expected FIELD=COLUMN"), (["userid=x"], "not an event field")])
def test_bad_mapping_is_explained(pairs: list[str], message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        parse_mapping(pairs)


def test_parquet_rows_and_format_detection(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from segstream.replay import detect_format

    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"cust": ["a", "b"], "ts": [1_767_225_600_000, 1_767_225_700_000],
                             "spend": [3.5, None]}), path)
    assert detect_format(path) == "parquet"
    assert detect_format(tmp_path / "x.csv.gz") == "csv"
    assert detect_format(tmp_path / "x.ndjson") == "jsonl"
    mapper = make_mapper(parse_mapping(["user_id=cust", "amount=spend"]), "purchase", None)
    rows = [mapper(r) for r in read_rows(path, "parquet")]
    assert rows == [
        {"user_id": "a", "ts": 1_767_225_600_000, "event_type": "purchase", "amount": 3.5},
        {"user_id": "b", "ts": 1_767_225_700_000, "event_type": "purchase"},
    ]
