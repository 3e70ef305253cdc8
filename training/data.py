"""Feature tables for training: from Parquet/CSV history or the ``features`` topic.

A :class:`FeatureTable` is the raw (unscaled) matrix in FEATURE_SPEC order plus the
user ids and last-event times. Column names come from the spec only; a table built
on another spec version is refused with both versions named.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segstream.contract import FEATURE_SPEC, FeatureSpec

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class FeatureTable:
    user_ids: np.ndarray  # object array of str
    X: np.ndarray  # n x d raw features, spec order
    last_event_ms: np.ndarray  # int64, 0 where unknown
    source: str = ""

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
        return FeatureTable(self.user_ids[idx], self.X[idx], self.last_event_ms[idx],
                            self.source)


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


def table_from_frame(df: pd.DataFrame, source: str = "",
                     spec: FeatureSpec = FEATURE_SPEC) -> FeatureTable:
    if "spec_version" in df.columns:
        versions = sorted({str(v) for v in df["spec_version"].dropna().unique()})
        for v in versions:
            spec.check_version(v, what=f"the feature table {source or ''}".strip())
    if "user_id" in df.columns:
        # several snapshots of one user (Parquet history): keep the newest
        if df["user_id"].duplicated().any():
            if "last_event_ms" in df.columns:
                df = df.sort_values("last_event_ms", kind="stable")
            df = df.drop_duplicates("user_id", keep="last")
        users = df["user_id"].astype(str).to_numpy(dtype=object)
    else:
        users = np.array([f"row{i}" for i in range(len(df))], dtype=object)
    X = as_matrix(df, spec)
    bad = ~np.isfinite(X)
    if bad.any():  # a missing feature means the spec default
        X = np.where(bad, np.asarray(spec.defaults)[None, :], X)
    ts = (df["last_event_ms"].fillna(0).to_numpy(dtype=np.int64)
          if "last_event_ms" in df.columns else np.zeros(len(df), dtype=np.int64))
    return FeatureTable(users, X, ts, source)


def read_table(path: Path, spec: FeatureSpec = FEATURE_SPEC) -> FeatureTable:
    """Parquet file or directory (Parquet history), or CSV."""
    import pandas as pd

    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; compute features first (`segstream features --from "
            "EVENTS.jsonl --out FEATURES.parquet`) or pass the Parquet history directory"
        )
    if path.is_file() and path.suffix.lower() in (".csv", ".gz") and ".csv" in path.name:
        df = pd.read_csv(path)
    else:
        df = pd.read_parquet(path)
    if len(df) == 0:
        raise ValueError(f"{path} holds no feature rows")
    return table_from_frame(df, str(path), spec)


def table_from_messages(values: Iterable[bytes], source: str = "features",
                        spec: FeatureSpec = FEATURE_SPEC) -> FeatureTable:
    """Latest vector per user from ``features`` topic messages (other specs refused)."""
    from segstream.online_store import decode_feature_message

    latest: dict[str, tuple[int, np.ndarray]] = {}
    for value in values:
        msg = decode_feature_message(value)
        spec.check_version(msg.record.spec_version, what=f"a message on {source}")
        prev = latest.get(msg.user_id)
        if prev is None or msg.record.last_event_ms >= prev[0]:
            latest[msg.user_id] = (msg.record.last_event_ms, msg.record.vector)
    if not latest:
        raise ValueError(f"{source} holds no feature messages; run the streaming job first")
    users = np.array(list(latest), dtype=object)
    X = np.vstack([v for _, v in latest.values()]).astype(np.float64)
    ts = np.array([t for t, _ in latest.values()], dtype=np.int64)
    return FeatureTable(users, X, ts, source)


def read_truth(path: Path) -> dict[str, tuple[str, str]]:
    """``segstream generate --truth`` CSV: user -> (persona, persona_after_drift)."""
    import csv

    with open(path, newline="") as f:
        return {row["user_id"]: (row["persona"], row.get("persona_after_drift") or
                                 row["persona"]) for row in csv.DictReader(f)}
