"""`segstream replay`: a 3-column CSV into Kafka; every accepted row arrives exactly once;
a 1997 purchase log with yyyymmdd dates; what the vocabulary does not recognise is
reported."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from segstream.adapters.topic_reader import read_topic
from segstream.app.cli import app
from segstream.config import Settings
from segstream.core.events import validate_event
from segstream.sources.replay import Recognised, ReplayError, make_mapper, parse_mapping, read_rows

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
    ], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "sent 4 events" in result.output
    for reason in ("missing_field", "bad_timestamp", "negative_number", "wrong_type"):
        assert reason in result.output

    sent = list(read_topic(settings.kafka_bootstrap or "", events))
    bodies = [orjson.loads(r.value or b"") for r in sent]
    assert len(bodies) == 4  # exactly once: no row twice, none missing
    from segstream.core.times import parse_timestamp

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
    # a parsed time is sent on as ISO text (a number's unit would be read by magnitude)
    assert mapper(rows[0]) == {"user_id": "a", "ts": "2026-01-05T10:00:00+00:00",
                               "event_type": "play"}
    ev = validate_event(mapper(rows[0]))
    assert isinstance(ev, dict) and ev["ts"] == 1_767_607_200_000
    early = make_mapper({}, "login", "%Y-%m-%d %H:%M")({"user_id": "x", "ts": "1970-01-02 00:00"})
    ev = validate_event(early)  # 86,400,000 ms: as a bare number it would read as seconds
    assert isinstance(ev, dict) and ev["ts"] == 86_400_000
    assert "__invalid_json__" in rows[1] and "__not_object__" in rows[2]


@pytest.mark.parametrize(("pairs", "message"), [
    (["user_id"], "expected FIELD=COLUMN"), (["userid=x"], "not an event field")])
def test_bad_mapping_is_explained(pairs: list[str], message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        parse_mapping(pairs)


def test_parquet_rows_and_format_detection(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from segstream.sources.replay import detect_format

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


# A 1997-98 purchase log as such logs come (one line per order: customer id, yyyymmdd
# date, amount); 00004 ordered on 1998-06-30, the log's last day.
PURCHASES_1997 = """customer_id,date,amount
00001,19970101,11.77
00002,19970112,12.00
00002,19970112,77.00
00003,19970102,20.76
00003,19970330,20.76
00003,19970402,19.54
00003,19971115,57.45
00003,19971125,20.96
00003,19980528,16.99
00004,19970101,29.33
00004,19970118,29.73
00004,19970802,14.96
00004,19971212,26.48
00004,19980630,9.99
00005,19970101,29.33
"""


def _cli_env(settings: Settings, dlq: str, **extra: str) -> dict[str, str]:
    return {"SEGSTREAM_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
            "SEGSTREAM_REDIS_URL": str(settings.redis_url), "SEGSTREAM_TOPIC_DLQ": dlq,
            "SEGSTREAM_DATA_DIR": str(settings.data_dir), "COLUMNS": "200", **extra}


def test_a_1997_purchase_log_with_yyyymmdd_dates_is_accepted(
        tmp_path: Path, settings_factory: Callable[..., Settings],
        topic_factory: Callable[..., str]) -> None:
    src = tmp_path / "purchases-1997.csv"
    src.write_text(PURCHASES_1997)
    events, dlq = topic_factory("events"), topic_factory("dlq")
    settings = settings_factory(topic_dlq=dlq)
    result = CliRunner().invoke(app, [
        "replay", str(src), "--map", "user_id=customer_id", "--map", "ts=date",
        "--map", "amount=amount", "--event-type", "purchase", "--ts-format", "%Y%m%d",
        "--topic", events], env=_cli_env(settings, dlq))
    assert result.exit_code == 0, result.output
    assert "read 15 rows, sent 15 events" in result.output
    assert "rejected" not in result.output and "not recognised" not in result.output
    bodies = [orjson.loads(r.value or b"") for r in read_topic(str(settings.kafka_bootstrap),
                                                               events)]
    assert len(bodies) == 15 and not list(read_topic(str(settings.kafka_bootstrap), dlq))
    from datetime import UTC, datetime

    sent = sorted((b["user_id"], b["ts"], b["amount"]) for b in bodies)
    expected = sorted(
        (c, int(datetime.strptime(d, "%Y%m%d").replace(tzinfo=UTC).timestamp()) * 1000,
         float(a)) for c, d, a in (line.split(",") for line in
                                   PURCHASES_1997.splitlines()[1:]))
    assert sent == expected
    assert min(t for _, t, _ in sent) == 852_076_800_000  # 1997-01-01T00:00Z
    assert max(t for _, t, _ in sent) == 899_164_800_000  # 1998-06-30T00:00Z

    # without --ts-format the same dates are ambiguous (seconds of 1970?): dead-lettered
    # with a detail that says so, not read as 1970
    again = CliRunner().invoke(app, [
        "replay", str(src), "--map", "user_id=customer_id", "--map", "ts=date",
        "--event-type", "purchase", "--topic", events], env=_cli_env(settings, dlq))
    assert again.exit_code == 0, again.output
    assert "sent 0 events" in again.output and "ambiguous" in again.output
    assert "--ts-format %Y%m%d" in again.output


CLICKS = [
    {"user_id": "m1", "ts": "2026-03-01T10:00:00Z", "event_type": "view", "platform": "mobile"},
    {"user_id": "m1", "ts": "2026-03-01T10:01:00Z", "event_type": "view", "platform": "Mobile"},
    {"user_id": "m1", "ts": "2026-03-01T10:02:00Z", "event_type": "add_to_cart",
     "platform": "mobile"},
    {"user_id": "d1", "ts": "2026-03-01T11:00:00Z", "event_type": "pageview",
     "platform": "desktop"},
    {"user_id": "d1", "ts": "2026-03-01T11:05:00Z", "event_type": "view", "platform": "web"},
    {"user_id": "t1", "ts": "2026-03-01T12:00:00Z", "event_type": "view",
     "platform": "smart_tv"},
    {"user_id": "t1", "ts": "2026-03-01T12:01:00Z", "event_type": "view",
     "platform": "smart_tv"},
]


def test_replay_reports_values_the_vocabulary_does_not_recognise(
        tmp_path: Path, settings_factory: Callable[..., Settings],
        topic_factory: Callable[..., str]) -> None:
    src = tmp_path / "clicks.jsonl"
    src.write_text("".join(orjson.dumps(c).decode() + "\n" for c in CLICKS))
    events, dlq = topic_factory("events"), topic_factory("dlq")
    settings = settings_factory(topic_dlq=dlq)
    result = CliRunner().invoke(app, ["replay", str(src), "--topic", events],
                                env=_cli_env(settings, dlq))
    assert result.exit_code == 0, result.output
    assert "sent 7 events" in result.output  # unrecognised values are sent all the same
    report = result.output[result.output.index("not recognised"):]
    assert "platform" in report and "'smart_tv' (2)" in report
    assert "event_type" not in report  # view, pageview, add_to_cart: all known
    assert "'mobile'" not in report and "'web'" not in report and "'desktop'" not in report

    # what was recognised counts as such: `mobile` is mobile, `view` a page view
    from segstream.core.aggregates import FeatureParams
    from segstream.streaming.step import features_frame, log_aggregates, valid_frame

    values = [r.value or b"" for r in read_topic(str(settings.kafka_bootstrap), events)]
    state = log_aggregates(valid_frame(values, now_ms=1_900_000_000_000),
                           watermark_ms=600_000, params=FeatureParams())
    f = features_frame(state, None, FeatureParams()).set_index("user_id")
    assert f.loc["m1", "mobile_share"] == pytest.approx(1.0)
    assert f.loc["d1", "mobile_share"] == 0.0 and f.loc["t1", "mobile_share"] == 0.0
    assert f.loc["m1", "adoption_breadth"] == pytest.approx(2 / 8)  # page_view, add_to_cart

    # naming the platform in the settings makes it known: nothing is reported
    quiet = CliRunner().invoke(app, ["replay", str(src), "--topic", events], env=_cli_env(
        settings, dlq, SEGSTREAM_VOCAB_DESKTOP_PLATFORMS='["web", "desktop", "smart_tv"]'))
    assert quiet.exit_code == 0 and "not recognised" not in quiet.output, quiet.output


def test_recognised_follows_the_settings_vocabulary() -> None:
    s = Settings(vocab_event_types={"wishlist_add": "add_to_cart"},
                 vocab_mobile_platforms=["phone"], vocab_desktop_platforms=["pc"])
    known = Recognised.of(s.feature_params().vocabulary, s.vocab_desktop_platforms)

    def unknown(event_type: str, platform: str | None) -> list[tuple[str, str]]:
        return list(known.unknown({"event_type": event_type, "platform": platform}))

    assert unknown(" Wishlist_Add ", "PHONE") == [] == unknown("purchase", "pc")
    assert unknown("search", None) == []  # canonical types are always known; no platform
    assert unknown("view", "mobile") == [("event_type", "view"), ("platform", "mobile")]


def test_oversized_rows_are_dead_lettered_bounded_and_the_replay_goes_on(
        tmp_path: Path, settings_factory: Callable[..., Settings],
        topic_factory: Callable[..., str]) -> None:
    """A 3 MB row (over the producer's 1 MB limit) used to stop replay with
    MSG_SIZE_TOO_LARGE, and a CSV cell over 128 KiB with csv's field limit."""
    from segstream.adapters.dead_letters import DLQ_EXCERPT_BYTES, DeadLetterStore
    from segstream.core.contract import DLQ_HEADER_ORIGINAL_BYTES, DLQ_HEADER_STORED

    big_row = {"user_id": "u2", "ts": 1767323045000, "event_type": "view",
               "properties": {"blob": "x" * 3_000_000}}
    jsonl = tmp_path / "big.jsonl"
    jsonl.write_bytes(b"\n".join(orjson.dumps(r) for r in (
        {"user_id": "u1", "ts": 1767323045000, "event_type": "view"}, big_row,
        {"user_id": "u3", "ts": 1767323046000, "event_type": "search"})))
    csv_file = tmp_path / "big.csv"  # a 200 kB cell in a column that is not mapped
    csv_file.write_text("customer,date,note\nc1,2026-01-05 10:00,ok\n"
                        f"c2,2026-01-05 11:00,{'y' * 200_000}\n")
    events, dlq = topic_factory("events"), topic_factory("dlq")
    settings = settings_factory(topic_dlq=dlq)
    env = _cli_env(settings, dlq)
    result = CliRunner().invoke(app, ["replay", str(jsonl), "--topic", events], env=env)
    assert result.exit_code == 0, result.output
    assert "read 3 rows, sent 2 events" in result.output and "record_too_large" in result.output
    result = CliRunner().invoke(app, [
        "replay", str(csv_file), "--map", "user_id=customer", "--map", "ts=date",
        "--event-type", "view", "--topic", events], env=env)
    assert result.exit_code == 0, result.output
    assert "read 2 rows, sent 2 events" in result.output

    [letter] = read_topic(str(settings.kafka_bootstrap), dlq)
    full = orjson.dumps(big_row)
    assert letter.value is not None and len(letter.value) == DLQ_EXCERPT_BYTES
    assert int(letter.headers[DLQ_HEADER_ORIGINAL_BYTES]) == len(full)
    stored = DeadLetterStore(settings.dead_letter_dir).read(
        letter.headers[DLQ_HEADER_STORED].decode())
    assert orjson.loads(stored["value"][0]) == big_row
    assert len(list(read_topic(str(settings.kafka_bootstrap), events))) == 4


def test_what_replay_sends_the_stream_accepts_as_it_was(
        tmp_path: Path, settings_factory: Callable[..., Settings],
        topic_factory: Callable[..., str]) -> None:
    """``properties`` arrives as the object it was (it went as a JSON string, which the
    stream rejects as wrong_type); a record the stream would find too large is rejected
    by replay already, counting the whole record as sent (escapes included)."""
    from segstream.core.contract import MAX_RECORD_BYTES

    props = {"campaign": "spring", "tags": ["a", "b"], "depth": {"x": 1}}
    quoted = {"note": '"' * (MAX_RECORD_BYTES // 2)}  # under the limit as characters
    rows = [{"user_id": "u1", "ts": 1767323045000, "event_type": "view", "properties": props},
            {"user_id": "u2", "ts": 1767323046000, "event_type": "view", "properties": quoted}]
    src = tmp_path / "props.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    events, dlq = topic_factory("events"), topic_factory("dlq")
    settings = settings_factory(topic_dlq=dlq)
    result = CliRunner().invoke(app, ["replay", str(src), "--topic", events],
                                env=_cli_env(settings, dlq))
    assert result.exit_code == 0, result.output
    [sent] = read_topic(str(settings.kafka_bootstrap), events)
    assert orjson.loads(sent.value or b"")["properties"] == props
    ev = validate_event(sent.value or b"")  # what the stream's validator makes of it
    assert isinstance(ev, dict) and orjson.loads(ev["properties"]) == props
    [rejected] = read_topic(str(settings.kafka_bootstrap), dlq)
    assert rejected.headers["reason"] == b"record_too_large"
    assert len(quoted["note"]) < MAX_RECORD_BYTES  # too large only once escaped
