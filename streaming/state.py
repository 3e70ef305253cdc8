"""Per-group streaming state and the step that advances it.

Users are hashed into ``stream_state_buckets`` groups (``with_bucket``, in the JVM) and
the stateful operator (``applyInPandasWithState``) is keyed by group, so one Python
call per touched group handles all of its users at once with vectorised pandas/numpy
(``streaming.arrivals``, ``streaming.features``). Keying by user instead cost ~14 ms of
PySpark per-group machinery per touched user (docs/benchmarks.md).

A group's state (:class:`GroupState`) is its users' accepted events of the feature
window plus each user's newest event time. :func:`advance` is the one step: arrival
rules (late, duplicate) on the new records, append, trim each user to
``(last_event - window, last_event]``, features of the users that got new events. The
state holds exactly the events the features read, so a stream split into any
micro-batches ends with the features of one call over the whole log (the batch
command runs the same functions, and a test checks both).

Rejected records (``reason`` set by the validator) have no user: they form group -1 and
pass straight through as ``kind = rejected``.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, GroupedData
from pyspark.sql import functions as F

from segstream.contract import FEATURE_SPEC
from streaming.arrivals import classify
from streaming.features import DAY_MS, EVENT_COLUMNS, user_features
from streaming.validate import CARRIED_COLUMNS, VALIDATED_DDL, validate_records

# PySpark's own concat of group outputs warns on all-null columns (e.g. `value` of
# feature rows); the result is right, the warning is noise in every worker log.
warnings.filterwarnings("ignore", message="The behavior of DataFrame concatenation",
                        category=FutureWarning)

REJECTED_GROUP = -1
FEATURES_DDL = ", ".join(["user_id string", *(f"`{n}` double" for n in FEATURE_SPEC.names),
                          "last_event_ms long", "spec_version string"])
#: What the stateful operator emits: feature rows, dead letters, duplicate counts.
OUTPUT_SCHEMA = ("kind string, " + FEATURES_DDL + ", key binary, value binary, topic string, "
                 "partition int, offset long, reason string, detail string, count long")
OUTPUT_COLUMNS: tuple[str, ...] = tuple(
    c.split()[0].strip("`") for c in OUTPUT_SCHEMA.split(", "))
STATE_SCHEMA = "blob binary"
DEAD_COLUMNS = ("key", "value", "topic", "partition", "offset", "reason", "detail")


def with_bucket(validated: DataFrame, buckets: int) -> DataFrame:
    """Add ``bucket``: the user's state group, or -1 for a rejected record."""
    return validated.withColumn("bucket", F.when(
        F.col("user_id").isNotNull(), F.pmod(F.xxhash64("user_id"), F.lit(buckets))
    ).otherwise(F.lit(REJECTED_GROUP)).cast("int"))


def validated_groups(records: DataFrame, buckets: int) -> GroupedData:
    """Source records (``validate.CARRIED_COLUMNS``) validated and grouped by ``bucket``:
    the input of the group step, in the stream and in the batch command alike."""
    validated = records.select(*CARRIED_COLUMNS).mapInArrow(validate_records, VALIDATED_DDL)
    return with_bucket(validated, buckets).groupBy("bucket")


@dataclass
class GroupState:
    window: pd.DataFrame  # accepted events of the feature window, EVENT_COLUMNS
    newest: pd.Series  # user_id -> newest event time of any of the user's records

    @classmethod
    def empty(cls) -> GroupState:
        return cls(pd.DataFrame({c: pd.Series(dtype="int64" if c == "ts" else object)
                                 for c in EVENT_COLUMNS}), pd.Series(dtype="int64"))

    def encode(self) -> bytes:
        # pickle: the blob never leaves this job's checkpoint (written and read only
        # here) and it is several times faster than Arrow for frames of strings.
        return pickle.dumps((self.window, self.newest), protocol=5)

    @classmethod
    def decode(cls, blob: bytes) -> GroupState:
        window, newest = pickle.loads(blob)  # our own state only, see encode
        return cls(window, newest)


@dataclass(frozen=True)
class Step:
    features: pd.DataFrame  # one row per user with new accepted events
    late: pd.DataFrame  # late records (source columns kept for the DLQ)
    duplicates: int


def advance(state: GroupState, records: pd.DataFrame, *, watermark_ms: int,
            window_days: int, session_gap_minutes: float) -> tuple[GroupState, Step]:
    """Apply one micro-batch of valid ``records`` of a group to its ``state``."""
    records = records.sort_values(["partition", "offset"], kind="stable", ignore_index=True)
    arrived = classify(records, kept=state.window, newest=state.newest,
                       watermark_ms=watermark_ms)
    accepted = arrived.accepted[list(EVENT_COLUMNS)]
    window = pd.concat([state.window, accepted], ignore_index=True) if len(
        state.window) else accepted.reset_index(drop=True)
    last = window.groupby("user_id", sort=False)["ts"].transform("max")
    window = window[window["ts"] > last - window_days * DAY_MS].reset_index(drop=True)
    touched = window["user_id"].isin(accepted["user_id"].unique())
    features = user_features(window[touched], window_days=window_days,
                             session_gap_minutes=session_gap_minutes)
    return GroupState(window, arrived.newest), Step(features, arrived.late, arrived.duplicates)


def _rows(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    # No astype: PySpark converts with a null mask (NaN/None -> null) and an unsafe cast.
    out = df.reindex(columns=list(OUTPUT_COLUMNS))
    out["kind"] = kind
    return out


def make_update(*, watermark_ms: int, window_days: int, session_gap_minutes: float) -> Any:
    """The ``applyInPandasWithState`` function for these settings (a picklable closure)."""

    def update(key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: Any
               ) -> Iterator[pd.DataFrame]:
        records = pd.concat(list(frames), ignore_index=True)
        if key[0] == REJECTED_GROUP:
            yield _rows(records, "rejected")
            return
        current = GroupState.decode(state.get[0]) if state.exists else GroupState.empty()
        new_state, step = advance(current, records, watermark_ms=watermark_ms,
                                  window_days=window_days,
                                  session_gap_minutes=session_gap_minutes)
        state.update((new_state.encode(),))
        if len(step.features):
            yield _rows(step.features, "features")
        if len(step.late):
            yield _rows(step.late.assign(
                reason="late",
                detail=f"late: more than {watermark_ms} ms behind the user's newest event time"),
                "late")
        if step.duplicates:
            yield _rows(pd.DataFrame({"count": [step.duplicates]}), "duplicates")

    return update


def accept_group(records: pd.DataFrame, *, watermark_ms: int) -> pd.DataFrame:
    """The arrival rules over one group's whole log at once (the batch command)."""
    if records.empty or records["user_id"].isna().all():
        return records.iloc[:0][list(EVENT_COLUMNS)]
    records = records.sort_values(["partition", "offset"], kind="stable", ignore_index=True)
    empty = GroupState.empty()
    return classify(records, kept=empty.window, newest=empty.newest,
                    watermark_ms=watermark_ms).accepted[list(EVENT_COLUMNS)]

