"""Parse and validate raw event records in the JVM: the Spark twin of ``segstream.events``.

``parse_records(df)`` takes a DataFrame with a binary ``value`` column (a Kafka record
value or a line of an event log) and adds the normalised event columns of
``contract.EVENT_FIELDS`` plus ``reason``/``field``/``detail`` (null when valid). The
checks, their order and the reason strings are those of ``events.validate_event``, so
both give the same accept/reject decision and reason for the same bytes (a test runs
both on the generator's malformed records and hand-made edge cases).

The JSON is parsed once with ``try_parse_json`` into a VARIANT: unlike ``from_json``
with a typed schema, a variant keeps each value's JSON type, so "user_id is a number"
is told apart from "user_id is the string '123'" without any Python on the hot path.
Known divergences (documented in docs/streaming.md): JSON with trailing content after
a closing brace other than ``}``-terminated text, and objects with duplicate keys.
"""

from __future__ import annotations

import sys
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segstream.contract import (
    MAX_FIELD_CHARS,
    MAX_FUTURE_SKEW_MS,
    MAX_RECORD_BYTES,
    MIN_EVENT_TS_MS,
    OPTIONAL_NUMBER_FIELDS,
    OPTIONAL_STRING_FIELDS,
)

#: Columns ``parse_records`` adds, in order.
PARSED_COLUMNS: tuple[str, ...] = (
    "event_id", "user_id", "ts", "event_type", "session_id", "content_id", "category",
    "dwell_ms", "amount", "platform", "channel", "properties", "reason", "field", "detail",
)

_NUMERIC = ("BIGINT", "DOUBLE", "INT", "SMALLINT", "TINYINT", "FLOAT")
_EPOCH_SECONDS_BELOW = 100_000_000_000.0  # as in events.parse_timestamp


def _python_whitespace_class() -> str:
    """A Java regex class of exactly the characters Python's ``str.strip()`` removes."""
    chars = [c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()]
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


_BLANK_RE = r"\A" + _python_whitespace_class() + r"*\z"
# events._ISO_RE; (?d): only \n ends a line, as for Python's `$`.
_ISO_RE = (r"(?d)^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
           r"(Z|[+-]\d{2}:?\d{2})?$")
_DIGITS_RE = r"(?d)^[0-9]{1,16}$"


def _is_number(t: Column) -> Column:
    return t.isin(*_NUMERIC) | t.startswith("DECIMAL")


def _iso_parts(s: Column) -> dict[str, Column]:
    """Groups of events._ISO_RE, with the defaults events._parse_iso fills in."""
    def g(i: int) -> Column:
        return F.regexp_extract(s, _ISO_RE, i)

    return {"_iso_ok": g(0) != "", "_iso_date": g(1),
            "_iso_hhmm": F.when(g(2) == "", F.lit("00:00")).otherwise(g(2)),
            "_iso_ss": F.when(g(3) == "", F.lit("00")).otherwise(g(3)),
            "_iso_frac": F.rpad(F.substring(g(4), 1, 6), 6, "0"), "_iso_zone": g(5)}


def _iso_to_ms() -> Column:
    """Epoch ms from the ``_iso_*`` columns exactly as events._parse_iso computes it."""
    c = F.col
    date, hhmm, ss, zone = c("_iso_date"), c("_iso_hhmm"), c("_iso_ss"), c("_iso_zone")
    year = F.substring(date, 1, 4).cast("int")
    seconds = F.concat(ss, F.lit("."), c("_iso_frac")).cast("decimal(8,6)")
    local = F.try_make_timestamp(
        year, F.substring(date, 6, 2).cast("int"), F.substring(date, 9, 2).cast("int"),
        F.substring(hhmm, 1, 2).cast("int"), F.substring(hhmm, 4, 2).cast("int"), seconds,
        F.lit("UTC"),
    )
    zdigits = F.regexp_replace(F.substring(zone, 2, 5), ":", "")
    offset_s = F.when(zone.isin("", "Z"), F.lit(0)).otherwise(
        F.when(F.substring(zone, 1, 1) == "-", F.lit(-1)).otherwise(F.lit(1))
        * (F.substring(zdigits, 1, 2).cast("int") * 3600
           + F.substring(zdigits, 3, 2).cast("int") * 60)
    )
    micros = F.unix_micros(local) - offset_s.cast("long") * 1_000_000
    # dt.timestamp() is micros / 1e6 as a float; then * 1000 and int(): same IEEE steps.
    ms = ((micros.cast("double") / F.lit(1e6)) * F.lit(1000.0)).cast("long")
    ok = c("_iso_ok") & local.isNotNull() & (year >= 1) & (ss.cast("int") < 60) & (
        F.abs(offset_s) < 86_400)
    return F.when(ok, ms)


def _ts_to_ms() -> Column:
    """events.parse_timestamp in the JVM: epoch ms as a double (null if unparsable)."""
    t, text = F.col("_t_ts"), F.col("_s_ts")
    digits = (t == "STRING") & text.rlike(_DIGITS_RE)
    number = F.coalesce(F.col("_d_ts"), F.when(digits, text.cast("double")))
    from_number = F.when(number >= 0, F.when(number < _EPOCH_SECONDS_BELOW, number * 1000.0)
                         .otherwise(number))
    from_iso = F.when((t == "STRING") & ~digits, _iso_to_ms()).cast("double")
    # int(ms) truncates; kept as a double until range-checked so it never overflows a long.
    return F.floor(F.coalesce(from_number, from_iso))


def parse_records(df: DataFrame, *, now_ms: Column | None = None) -> DataFrame:
    """Add the normalised event columns and ``reason``/``field``/``detail`` to ``df``.

    Built in stages (one projection each) so the JSON is parsed once per record:
    Spark does not collapse projections that would duplicate an expensive expression.
    """
    now = now_ms if now_ms is not None else F.unix_millis(F.current_timestamp())
    c = F.col
    fields = ("user_id", "event_type", "ts", *OPTIONAL_STRING_FIELDS, *OPTIONAL_NUMBER_FIELDS,
              "properties")
    staged = df.withColumns({"_text": c("value").cast("string")})
    staged = staged.withColumns({"_v": F.try_parse_json("_text")})
    staged = staged.withColumns(
        {f"_t_{f}": F.schema_of_variant(F.try_variant_get("_v", f"$.{f}", "variant"))
         for f in fields} | {"_top": F.schema_of_variant("_v")})
    staged = staged.withColumns({f"_t_{f}": F.when(c(f"_t_{f}") != "VOID", c(f"_t_{f}"))
                                 for f in fields})
    staged = staged.withColumns(
        {f"_s_{f}": F.when(c(f"_t_{f}") == "STRING", F.try_variant_get("_v", f"$.{f}", "string"))
         for f in ("user_id", "event_type", "ts", *OPTIONAL_STRING_FIELDS)}
        | {f"_d_{f}": F.when(_is_number(c(f"_t_{f}")), F.try_variant_get("_v", f"$.{f}", "double"))
           for f in ("ts", *OPTIONAL_NUMBER_FIELDS)})
    staged = staged.withColumns(_iso_parts(c("_s_ts")))
    staged = staged.withColumns({"_ts": _ts_to_ms()})

    checks: list[tuple[Column, str, str | None, Column]] = []

    def check(cond: Column, reason: str, field: str | None, detail: Column | str) -> None:
        checks.append((cond, reason, field,
                       detail if isinstance(detail, Column) else F.lit(detail)))

    size = F.octet_length("value")
    check(size > MAX_RECORD_BYTES, "record_too_large", None,
          F.format_string(f"%d bytes, the limit is {MAX_RECORD_BYTES}", size))
    check(~F.is_valid_utf8("value"), "invalid_utf8", None, "not valid UTF-8")
    # orjson refuses text after the document; Spark's parser stops at the value's end.
    trailing = F.regexp_extract("_text", r"[}\]\"el0-9]\s*\z", 0) == ""
    check(c("_v").isNull() | trailing, "invalid_json", None, "not a JSON document")
    check(~c("_top").startswith("OBJECT"), "not_an_object", None,
          F.concat(F.lit("expected a JSON object, got "), F.lower("_top")))

    for name in ("user_id", "event_type"):
        t, s = c(f"_t_{name}"), c(f"_s_{name}")
        check(t.isNull(), "missing_field", name, "is required")
        check(t != "STRING", "wrong_type", name,
              F.concat(F.lit("must be a string, got "), F.lower(t)))
        check(s.rlike(_BLANK_RE), "empty_field", name, "must be a non-empty string")
        check(F.char_length(s) > MAX_FIELD_CHARS, "field_too_long", name,
              F.format_string(f"%d chars, max {MAX_FIELD_CHARS}", F.char_length(s)))

    ts = c("_ts")
    check(c("_t_ts").isNull(), "missing_field", "ts", "is required")
    check(ts.isNull(), "bad_timestamp", "ts",
          "is neither ISO-8601 nor epoch seconds/milliseconds")
    check(ts < MIN_EVENT_TS_MS, "bad_timestamp", "ts", "is before 2000-01-01: a unit mistake?")
    check(ts > now + MAX_FUTURE_SKEW_MS, "ts_in_future", "ts", "is more than 24 h after now")

    for name in OPTIONAL_STRING_FIELDS:
        t, s = c(f"_t_{name}"), c(f"_s_{name}")
        check(t.isNotNull() & (t != "STRING"), "wrong_type", name,
              F.concat(F.lit("must be a string, got "), F.lower(t)))
        check(F.char_length(s) > MAX_FIELD_CHARS, "field_too_long", name,
              F.format_string(f"%d chars, max {MAX_FIELD_CHARS}", F.char_length(s)))

    for name in OPTIONAL_NUMBER_FIELDS:
        t = c(f"_t_{name}")
        check(t.isNotNull() & ~_is_number(t), "wrong_type", name,
              F.concat(F.lit("must be a number, got "), F.lower(t)))
        check(c(f"_d_{name}") < 0, "negative_number", name, "is negative")

    props_t = c("_t_properties")
    check(props_t.isNotNull() & ~props_t.startswith("OBJECT"), "wrong_type", "properties",
          F.concat(F.lit("must be an object, got "), F.lower(props_t)))

    reason: Any = F
    field: Any = F
    detail: Any = F
    for cond, r, f, d in checks:
        hit = F.coalesce(cond, F.lit(False))
        reason = reason.when(hit, F.lit(r))
        field = field.when(hit, F.lit(f))
        detail = detail.when(hit, d)
    staged = staged.withColumns({"reason": reason, "field": field, "detail": detail})

    values: dict[str, Column] = {
        "user_id": c("_s_user_id"), "event_type": c("_s_event_type"),
        "ts": F.when(ts < 1e17, ts.cast("long")),
        **{n: F.when(c(f"_s_{n}") != "", c(f"_s_{n}")) for n in OPTIONAL_STRING_FIELDS},
        **{n: c(f"_d_{n}") for n in OPTIONAL_NUMBER_FIELDS},
        "properties": F.when(props_t.isNotNull(),
                             F.to_json(F.try_variant_get("_v", "$.properties", "variant"))),
    }
    derived_id = F.substring(F.sha2(F.concat_ws("\x1f", *[
        F.coalesce(values[n].cast("string"), F.lit("")) for n in PARSED_COLUMNS[1:12]]), 256),
        1, 24)
    values["event_id"] = F.coalesce(values["event_id"], derived_id)
    valid = c("reason").isNull()
    temp = [name for name in staged.columns if name.startswith("_")]
    return staged.withColumns(
        {name: F.when(valid, values[name]) for name in PARSED_COLUMNS[:12]}).drop(*temp)
