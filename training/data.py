"""Feature tables for training: every user's features as of one time ``T``.

Three sources, one rule:

* **A batch features file** (``segstream features --out``: ``user_id``, the spec's
  features, ``last_event_ms``, ``as_of_ms``, ``spec_version``, ``agg``) is already
  evaluated at its ``as_of_ms``; it is read as it is. Another ``as_of`` is refused:
  the file holds no events after its own ``as_of``, so it cannot say what later
  features are (compute it again with ``segstream features --as-of``).
* **The Parquet history** (one row per user per micro-batch: ``user_id``, ``agg``,
  ``events``, ``last_event_ms``, ``updated_ms``, ``batch_id``) and **`features` topic
  messages** (key = user id, value = ``agg`` bytes) are sequences of aggregate
  records. The snapshot as of ``T`` takes, per user, the newest record whose
  ``last_event_ms <= T`` (newest by ``(last_event_ms, events)``, the order the online
  store's upsert uses) and evaluates it at ``T`` with ``aggregates.evaluate``. Users
  with no such record had not appeared by ``T`` and are left out. The default ``T``
  is the stream time: the newest ``last_event_ms`` among the records read, so a replay
  of an old log trains as of its own end and not as of the wall clock.

Every source carries the feature params fingerprint (in each ``agg`` record); a table
whose records were made with other params (half-lives, session gap, vocabulary) than
this process's is refused, naming both. A :class:`FeatureTable` records the params
(``FeatureParams.describe()``) and ``as_of_ms``; the fitted model keeps them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segstream.adapters import history
from segstream.core.aggregates import (
    FeatureParams,
    RecordMismatch,
    decode,
    decode_lenient,
    evaluate,
)
from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.core.times import format_time

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _iso(ms: int) -> str:
    return format_time(ms, "seconds")



@dataclass(frozen=True)
class FeatureTable:
    user_ids: np.ndarray  # object array of str
    X: np.ndarray  # n x d raw features, spec order
    last_event_ms: np.ndarray  # int64
    source: str = ""
    as_of_ms: int | None = None  # the time every row is evaluated at
    feature_params: Mapping[str, Any] | None = None  # FeatureParams.describe() of the rows
    aggs: np.ndarray | None = None  # the aggregate records, when the source had them

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def data_range(self) -> tuple[int, int]:
        known = self.last_event_ms[self.last_event_ms > 0]
        return (int(known.min()), int(known.max())) if len(known) else (0, 0)

    def frame(self, spec: FeatureSpec = FEATURE_SPEC) -> pd.DataFrame:
        """Named columns in spec order (what scikit-learn estimators are fitted on)."""
        import pandas as pd

        return pd.DataFrame(self.X, columns=list(spec.names))

    def take(self, idx: np.ndarray) -> FeatureTable:
        return replace(self, user_ids=self.user_ids[idx], X=self.X[idx],
                       last_event_ms=self.last_event_ms[idx],
                       aggs=None if self.aggs is None else self.aggs[idx])


def as_matrix(X: Any, spec: FeatureSpec = FEATURE_SPEC) -> np.ndarray:
    """A float64 matrix in spec order from a DataFrame (columns checked) or an array."""
    if hasattr(X, "columns"):
        missing = [n for n in spec.names if n not in X.columns]
        if missing:
            raise ValueError(
                f"feature table lacks columns {missing}; spec {spec.version} needs {spec.names}"
            )
        return np.asarray(X[list(spec.names)], dtype=np.float64)
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(spec):
        raise ValueError(f"expected an (n, {len(spec)}) matrix in spec order, got {arr.shape}")
    return arr


def missing_allowed(X: np.ndarray, spec: FeatureSpec = FEATURE_SPEC) -> np.ndarray:
    """Where a feature may be missing: a nullable feature of a user without its flag."""
    out = np.zeros(X.shape, dtype=bool)
    for j, (f, flag) in enumerate(zip(spec.features, spec.given_columns, strict=True)):
        if f.nullable:
            out[:, j] = np.isnan(X[:, j]) & (X[:, flag] == 0.0)
    return out


# ------------------------------------------------------------ aggregate records


def table_from_aggregates(user_ids: Sequence[str] | np.ndarray, aggs: np.ndarray,
                          as_of_ms: int, params: FeatureParams, source: str = ""
                          ) -> FeatureTable:
    """Records (one per user) evaluated at ``as_of_ms``."""
    X = evaluate(aggs, as_of_ms, params)
    return FeatureTable(np.asarray(user_ids, dtype=object), X,
                        aggs["last_ms"].astype(np.int64), source, int(as_of_ms),
                        params.describe(), aggs)


def snapshot(user_ids: np.ndarray, aggs: np.ndarray, as_of_ms: int | None,
             params: FeatureParams, source: str) -> FeatureTable:
    """Every user as of ``as_of_ms`` (default: the newest event time among ``aggs``)
    from a sequence of records, several per user allowed (see the module docstring)."""
    if len(aggs) == 0:
        raise ValueError(f"{source} holds no aggregate records; run the streaming job first")
    stream_ms = int(aggs["last_ms"].max())
    T = stream_ms if as_of_ms is None else int(as_of_ms)
    rows = history.latest_rows(user_ids, aggs["last_ms"], aggs["events"], T)
    if len(rows) == 0:
        raise ValueError(
            f"{source} has no record with last_event_ms <= as_of {_iso(T)}: its records "
            f"start at {_iso(int(aggs['last_ms'].min()))}")
    return table_from_aggregates(np.asarray(user_ids, dtype=object)[rows], aggs[rows], T,
                                 params, source)


def decode_records(blobs: Sequence[bytes], params: FeatureParams, source: str
                   ) -> np.ndarray:
    """``aggregates.decode``, naming the source when the params or layout differ."""
    try:
        return decode(blobs, params)
    except RecordMismatch as exc:
        raise RecordMismatch(f"{source}: {exc}") from exc


def decode_messages(messages: Iterable[tuple[bytes | None, bytes | None]],
                    params: FeatureParams, source: str = "features", *,
                    require_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, records) of `features` topic messages ``(key, value)``; messages
    without a key or a value (tombstones) are skipped.

    A message that is not a record of these params is skipped with a warning naming
    it, so one stray message cannot stop training or the updater at the same offset
    forever. With ``require_one`` (a whole source at once), none decoding is a setting,
    not a stray: the first error is raised, naming the source. A reader of part of a
    source at a time (the updater's polls) passes False and judges over its run.
    """
    keys: list[str] = []
    blobs: list[bytes] = []
    for key, value in messages:
        if key is None or value is None:
            continue
        keys.append(key.decode("utf-8", "replace"))
        blobs.append(value)
    ok, aggs = decode_lenient(keys, blobs, params, source=source, require_one=require_one)
    return np.array([keys[i] for i in ok], dtype=object), aggs


def table_from_messages(messages: Iterable[tuple[bytes | None, bytes | None]],
                        params: FeatureParams, source: str = "features",
                        as_of_ms: int | None = None) -> FeatureTable:
    """Snapshot as of ``as_of_ms`` (default: the stream time) of `features` messages."""
    users, aggs = decode_messages(messages, params, source)
    return snapshot(users, aggs, as_of_ms, params, source)


# ------------------------------------------------------------------ files


def read_history(path: Path, params: FeatureParams, as_of_ms: int | None = None
                 ) -> FeatureTable:
    """Snapshot as of ``as_of_ms`` of a Parquet history (a directory of per-batch files,
    or one such file)."""
    return table_from_snapshot(history.read_snapshot(path, as_of_ms), params, str(path))


def table_from_snapshot(snap: history.Snapshot, params: FeatureParams, source: str
                        ) -> FeatureTable:
    """A history snapshot's records, decoded and evaluated at its time."""
    if len(snap.blobs) == 0:
        raise ValueError(f"{source} has no record with last_event_ms <= as_of "
                         f"{_iso(snap.as_of_ms)}: the history starts at {_iso(snap.first_ms)}")
    aggs = decode_records(snap.blobs, params, source)
    return table_from_aggregates(snap.user_ids, aggs, snap.as_of_ms, params, source)


def table_from_frame(df: pd.DataFrame, params: FeatureParams, source: str = "",
                     as_of_ms: int | None = None, spec: FeatureSpec = FEATURE_SPEC
                     ) -> FeatureTable:
    """A batch features frame (``segstream features --out`` columns), checked: spec
    version, columns, one ``as_of_ms`` (equal to ``as_of_ms`` if given), the params
    fingerprint in its ``agg`` records, finite values."""
    what = f"the feature table {source}".strip()
    if "spec_version" not in df.columns:
        raise ValueError(f"{what} has no spec_version column; compute it with `segstream "
                         "features`")
    for v in sorted({str(v) for v in df["spec_version"].dropna().unique()}):
        spec.check_version(v, what=what)
    for column in ("user_id", "as_of_ms", "agg"):
        if column not in df.columns:
            raise ValueError(
                f"{what} has no {column} column: it is not a `segstream features` output of "
                f"spec {spec.version} (its agg records carry the feature params, as_of_ms the "
                "time it was evaluated at)")
    times = sorted({int(t) for t in df["as_of_ms"].unique()})
    if len(times) != 1:
        raise ValueError(f"{what} mixes {len(times)} as_of times ({times[:3]}...); a training "
                         "table is one snapshot")
    if as_of_ms is not None and int(as_of_ms) != times[0]:
        raise ValueError(
            f"{what} is evaluated as of {_iso(times[0])} ({times[0]} ms), not the requested "
            f"{_iso(int(as_of_ms))} ({int(as_of_ms)} ms): it holds no events after its own "
            "as_of. Run `segstream features --as-of ...` again, or train on the Parquet "
            "history, which can be evaluated at any time")
    if df["user_id"].duplicated().any():
        dup = df.loc[df["user_id"].duplicated(), "user_id"].iloc[0]
        raise ValueError(f"{what} has several rows for user {dup!r}; one snapshot has one "
                         "row per user")
    aggs = decode_records([bytes(b) for b in df["agg"]], params, what)
    X = as_matrix(df, spec)
    bad = ~np.isfinite(X) & ~missing_allowed(X, spec)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{what}: feature {spec.names[c]} of user {df['user_id'].iloc[r]!r} "
                         f"is {X[r, c]}; features are finite (null only where the spec "
                         "says a feature has no value)")
    return FeatureTable(df["user_id"].astype(str).to_numpy(dtype=object), X,
                        df["last_event_ms"].to_numpy(dtype=np.int64), source, times[0],
                        params.describe(), aggs)


def read_table(path: Path, params: FeatureParams, as_of_ms: int | None = None,
               spec: FeatureSpec = FEATURE_SPEC) -> FeatureTable:
    """A batch features file, or the Parquet history (directory or one of its files)."""
    import pandas as pd
    import pyarrow.parquet as pq

    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; compute features first (`segstream features --from "
            "EVENTS.jsonl --out FEATURES.parquet`) or pass the Parquet history directory"
        )
    if path.is_dir():
        return read_history(path, params, as_of_ms)
    try:
        columns = set(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise ValueError(f"{path} is not a Parquet file ({exc})") from exc
    if not set(spec.names) & columns and history.is_history(columns):
        return read_history(path, params, as_of_ms)
    df = pd.read_parquet(path)
    if len(df) == 0:
        raise ValueError(f"{path} holds no feature rows")
    return table_from_frame(df, params, str(path), as_of_ms, spec)


def read_truth(path: Path) -> dict[str, tuple[str, str]]:
    """``segstream generate --truth`` CSV: user -> (persona, persona_after_drift)."""
    import csv

    with open(path, newline="") as f:
        return {row["user_id"]: (row["persona"], row.get("persona_after_drift") or
                                 row["persona"]) for row in csv.DictReader(f)}
