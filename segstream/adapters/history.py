"""The Parquet feature history: one file per micro-batch of the stream, read back as
point-in-time snapshots.

Each file ``batch=<id>.parquet`` holds the aggregate record (``aggregates.encode``
bytes) of every user the batch touched, columns :data:`COLUMNS`. A snapshot "every user
as of T" is the newest row per user with ``last_event_ms <= T`` (newest by
``(last_event_ms, events)``, the order the Redis upsert keeps), evaluated at T by the
reader. Writing one file per batch id, to a temporary name then renamed, makes a
replayed batch change nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("user_id", "agg", "events", "last_event_ms", "updated_ms", "batch_id")


def batch_file(directory: Path, batch_id: int) -> Path:
    return directory / f"batch={batch_id:09d}.parquet"


def write_batch(directory: Path, batch_id: int, rows: pd.DataFrame) -> None:
    """Write one batch's rows (columns :data:`COLUMNS`) atomically; empty: nothing."""
    if rows.empty:
        return
    directory.mkdir(parents=True, exist_ok=True)
    final = batch_file(directory, batch_id)
    tmp = final.with_suffix(".tmp")
    rows[list(COLUMNS)].to_parquet(tmp, index=False)
    os.replace(tmp, final)


def is_history(columns: set[str]) -> bool:
    """True if a Parquet file with these columns is a history file."""
    return set(COLUMNS) <= columns


def latest_rows(user_ids: np.ndarray, last_ms: np.ndarray, events: np.ndarray,
                as_of_ms: int) -> np.ndarray:
    """Positions of each user's newest record with ``last_ms <= as_of_ms`` (newest by
    ``(last_ms, events)``, then by position: a later row wins a tie)."""
    pos = np.flatnonzero(np.asarray(last_ms, dtype=np.int64) <= as_of_ms)
    df = pd.DataFrame({"u": np.asarray(user_ids, dtype=object)[pos],
                       "t": np.asarray(last_ms, dtype=np.int64)[pos],
                       "n": np.asarray(events, dtype=np.int64)[pos], "pos": pos})
    df = df.sort_values(["u", "t", "n", "pos"], kind="stable")
    return np.sort(df.drop_duplicates("u", keep="last")["pos"].to_numpy(np.int64))


def _files(path: Path) -> list[Path]:
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise ValueError(f"{path} holds no Parquet history files; run `segstream stream` first")
    return files


def time_span(path: Path) -> tuple[int, int]:
    """The oldest and the newest ``last_event_ms`` of a history (its newest is the stream
    time: what a snapshot defaults to). Reads one column."""
    last = pd.concat([pd.read_parquet(f, columns=["last_event_ms"]) for f in _files(path)],
                     ignore_index=True)["last_event_ms"]
    return int(last.min()), int(last.max())


@dataclass(frozen=True)
class Snapshot:
    """The newest record per user as of ``as_of_ms``, still encoded."""

    user_ids: np.ndarray  # object array of str
    blobs: list[bytes]
    as_of_ms: int
    first_ms: int  # the history's oldest last_event_ms, for messages


def read_snapshot(path: Path, as_of_ms: int | None = None) -> Snapshot:
    """The records of a history (a directory of batch files, or one file) as of
    ``as_of_ms`` (default: its newest event time). Only the small columns are read to
    choose the rows; records are read for the chosen rows."""
    return read_snapshots(path, [as_of_ms])[0]


def read_snapshots(path: Path, times: Sequence[int | None]) -> list[Snapshot]:
    """:func:`read_snapshot` at several times, reading the history's files once."""
    files = _files(path)
    meta = pd.concat([pd.read_parquet(f, columns=["user_id", "events", "last_event_ms"])
                      .assign(_file=i, _row=lambda d: np.arange(len(d)))
                      for i, f in enumerate(files)], ignore_index=True)
    users_all = meta["user_id"].to_numpy(dtype=object)
    last_all = meta["last_event_ms"].to_numpy(np.int64)
    events_all = meta["events"].to_numpy(np.int64)
    first_ms, stream_ms = int(last_all.min()), int(last_all.max())
    aggs: dict[int, np.ndarray] = {}  # a file's records, read once for all times
    out = []
    for as_of_ms in times:
        T = stream_ms if as_of_ms is None else int(as_of_ms)
        chosen = meta.iloc[latest_rows(users_all, last_all, events_all, T)]
        blobs: list[bytes] = []
        users: list[str] = []
        for _, part in chosen.groupby("_file", sort=True):
            i = int(part["_file"].iloc[0])
            if i not in aggs:
                aggs[i] = pd.read_parquet(files[i], columns=["agg"])["agg"].to_numpy(dtype=object)
            blobs.extend(bytes(b) for b in aggs[i][part["_row"].to_numpy(np.int64)])
            users.extend(part["user_id"].astype(str))
        out.append(Snapshot(np.array(users, dtype=object), blobs, T, first_ms))
    return out
