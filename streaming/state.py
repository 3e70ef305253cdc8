"""Per-user streaming state: the arrival rules of ``streaming.arrivals`` applied
incrementally, keeping each user's accepted events of the feature window.

Used with ``applyInPandasWithState`` keyed by ``user_id``. For each user touched by a
micro-batch, in arrival order (partition, offset), a record is ``late`` if its event
time is more than the watermark behind the newest event time seen for the user,
else a ``duplicate`` if its event_id is among the user's kept events, else accepted.
The state keeps the accepted events of ``(last_event - window, last_event]`` (a pickled
frame), which is exactly what the feature transform reads, so the function emits the
user's whole window (``kind = event``) and the JVM computes the features from it.

Rejected records (``reason`` set by the parser) have no user id: they arrive as the
null-key group and pass straight through as ``kind = rejected``.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from streaming.features import DAY_MS

# PySpark's own concat of group outputs warns on all-null columns (e.g. `value` of
# event rows); the result is right, the warning is noise in every worker log.
warnings.filterwarnings("ignore", message="The behavior of DataFrame concatenation",
                        category=FutureWarning)

#: Columns of the stateful operator's input, in order.
INPUT_COLUMNS: tuple[str, ...] = (
    "user_id", "event_id", "ts", "event_type", "session_id", "content_id", "category",
    "dwell_ms", "amount", "platform", "key", "value", "topic", "partition", "offset",
    "reason", "detail",
)
EVENT_COLUMNS: tuple[str, ...] = INPUT_COLUMNS[:10]
OUTPUT_SCHEMA = (
    "kind string, user_id string, event_id string, ts long, event_type string, "
    "session_id string, content_id string, category string, dwell_ms double, amount double, "
    "platform string, key binary, value binary, topic string, partition int, offset long, "
    "reason string, detail string"
)
OUTPUT_COLUMNS: tuple[str, ...] = tuple(c.split()[0] for c in OUTPUT_SCHEMA.split(", "))
STATE_SCHEMA = "events binary"


def _encode(df: pd.DataFrame) -> bytes:
    # pickle: ~10x faster than pyarrow's pandas conversion for a few hundred rows, and
    # the blob never leaves this job's checkpoint (written and read by this module only).
    return pickle.dumps(df[list(EVENT_COLUMNS)].reset_index(drop=True), protocol=5)


def _decode(blob: bytes) -> pd.DataFrame:
    frame: pd.DataFrame = pickle.loads(blob)  # our own state only, see _encode
    return frame


def _out(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    # No astype: PySpark converts with a null mask (NaN/None -> null) and an unsafe
    # cast, and a per-group astype to nullable dtypes was half the Python time.
    out = df.reindex(columns=list(OUTPUT_COLUMNS))
    out["kind"] = kind
    return out


def make_update(watermark_ms: int, window_days: int) -> Any:
    """The ``applyInPandasWithState`` function for these settings (a picklable closure)."""
    window_ms = window_days * DAY_MS

    def update(key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: Any
               ) -> Iterator[pd.DataFrame]:
        new = pd.concat(list(frames), ignore_index=True)
        if key[0] is None:
            yield _out(new, "rejected")
            return
        new = new.sort_values(["partition", "offset"], kind="stable", ignore_index=True)
        kept = _decode(state.get[0]) if state.exists else pd.DataFrame(
            columns=list(EVENT_COLUMNS))
        ts = new["ts"].to_numpy(dtype=np.int64)
        prior = int(kept["ts"].max()) if len(kept) else np.iinfo(np.int64).min
        # newest event time among the user's earlier records, for each record
        newest = np.maximum.accumulate(np.concatenate(([prior], ts)))[:-1]
        late = (newest > np.iinfo(np.int64).min) & (ts < newest - watermark_ms)
        on_time = new[~late]
        seen = pd.concat([kept["event_id"], on_time["event_id"]], ignore_index=True)
        dup = seen.duplicated(keep="first").to_numpy()[len(kept):]
        accepted = on_time[~dup]
        window = accepted[list(EVENT_COLUMNS)] if kept.empty else pd.concat(
            [kept, accepted[list(EVENT_COLUMNS)]], ignore_index=True)
        if len(window):
            last = int(window["ts"].max())
            window = window[window["ts"] > last - window_ms]
            state.update((_encode(window),))
            yield _out(window, "event")
        if late.any():
            yield _out(new[late].assign(reason="late", detail=(
                f"more than {watermark_ms} ms behind the user's newest event time")), "late")
        if dup.any():
            yield _out(on_time[dup], "duplicate").assign(value=None, key=None)

    return update
