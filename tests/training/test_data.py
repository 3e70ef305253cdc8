"""Training tables: snapshots "every user as of T" from the history and the topic, the
batch features file, and the feature params check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segstream.adapters.history import latest_rows
from segstream.core.aggregates import FeatureParams, RecordMismatch, Vocabulary, encode
from segstream.core.contract import FEATURE_SPEC, FeatureSpecMismatch
from segstream.streaming.step import log_aggregates
from segstream.training.data import (
    FeatureTable,
    read_table,
    table_from_aggregates,
    table_from_messages,
)
from tests.support.real_logs import (
    PARAMS,
    WATERMARK_MS,
    RealLog,
    features_file,
    messages,
    write_history,
)

DAY_MS = 86_400_000
OTHER = FeatureParams(half_life_short_days=3.0)


def cut_at(log: RealLog, as_of_ms: int) -> pd.DataFrame:
    """Features of the log's events up to ``as_of_ms``, evaluated at it (the batch
    command's ``--as-of``): what a point-in-time snapshot must give."""
    state = log_aggregates(log.valid, watermark_ms=WATERMARK_MS, params=PARAMS,
                           as_of_ms=as_of_ms)
    return features_file(state.users, state.aggs, as_of_ms)


def frame_of(table: FeatureTable) -> pd.DataFrame:
    df = table.frame()
    df.insert(0, "user_id", table.user_ids)
    return df.sort_values("user_id", ignore_index=True)


@pytest.fixture(scope="module")
def history(log_a: RealLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log as a stream of daily micro-batches (cut at each UTC midnight)."""
    start = int(log_a.valid["ts"].min()) // DAY_MS * DAY_MS
    cuts = list(range(start + DAY_MS - 1, log_a.end_ms, DAY_MS))
    path = tmp_path_factory.mktemp("history") / "features"
    write_history(path, log_a.valid, cuts)
    return path


def test_history_snapshot_as_of_t_equals_the_log_cut_at_t(log_a: RealLog, history: Path
                                                          ) -> None:
    """At a micro-batch boundary the snapshot holds exactly the events up to T, each user
    evaluated at T: the same features as the batch command with --as-of T."""
    start = int(log_a.valid["ts"].min()) // DAY_MS * DAY_MS
    for day in (3, 12):
        T = start + day * DAY_MS - 1
        table = read_table(history, PARAMS, T)
        want = cut_at(log_a, T)
        got = frame_of(table)
        assert table.as_of_ms == T and table.feature_params == PARAMS.describe()
        assert got["user_id"].tolist() == want["user_id"].tolist()  # who had appeared
        assert len(got) < len(log_a.state.users)  # new_explorer users start later
        np.testing.assert_allclose(got[list(FEATURE_SPEC.names)].to_numpy(),
                                   want[list(FEATURE_SPEC.names)].to_numpy(), rtol=1e-9)
        assert (table.last_event_ms <= T).all()


def test_history_default_is_the_stream_time_and_later_times_age_users(
        log_a: RealLog, history: Path) -> None:
    table = read_table(history, PARAMS)
    assert table.as_of_ms == log_a.end_ms  # the newest event time in the history
    want = cut_at(log_a, log_a.end_ms)
    np.testing.assert_allclose(frame_of(table)[list(FEATURE_SPEC.names)].to_numpy(),
                               want[list(FEATURE_SPEC.names)].to_numpy(), rtol=1e-9)
    # a week after the last event: same users, each a week older, rates lower
    later = read_table(history, PARAMS, log_a.end_ms + 7 * DAY_MS)
    assert later.user_ids.tolist() == table.user_ids.tolist()
    r = FEATURE_SPEC.index("recency_days")
    np.testing.assert_allclose(later.X[:, r], table.X[:, r] + 7.0, rtol=1e-12)
    rate = FEATURE_SPEC.index("session_rate_short")
    assert (later.X[:, rate] < table.X[:, rate]).all()
    # one file of the history is a history too
    one = read_table(sorted(history.glob("*.parquet"))[0], PARAMS)
    assert len(one) > 0 and one.as_of_ms < table.as_of_ms


def test_history_refuses_other_params_and_a_time_before_it(history: Path) -> None:
    with pytest.raises(RecordMismatch, match=f"{OTHER.fingerprint:08x}"):
        read_table(history, OTHER)
    with pytest.raises(ValueError, match="no record with last_event_ms <= as_of 2020"):
        read_table(history, PARAMS, 1_577_836_800_000)  # 2020-01-01


def test_latest_row_per_user_is_newest_by_time_then_events() -> None:
    users = np.array(["a", "a", "a", "b", "b", "c"], dtype=object)
    last = np.array([10, 30, 30, 5, 50, 60])
    events = np.array([1, 3, 4, 1, 2, 1])  # a's late event: same time, one more event
    assert latest_rows(users, last, events, 40).tolist() == [2, 3]
    assert latest_rows(users, last, events, 100).tolist() == [2, 4, 5]
    assert latest_rows(users, last, events, 4).tolist() == []


def test_messages_snapshot_keeps_each_users_newest_record(log_a: RealLog) -> None:
    early = log_aggregates(log_a.valid, watermark_ms=WATERMARK_MS, params=PARAMS,
                           as_of_ms=log_a.end_ms - 10 * DAY_MS)
    msgs = [*messages(log_a.state.users, log_a.state.aggs), (b"gone", None),
            *messages(early.users, early.aggs)]  # older records arrive after newer ones
    table = table_from_messages(msgs, PARAMS, "features")
    assert table.as_of_ms == log_a.end_ms  # the stream time: the newest event read
    want = log_a.table()
    assert sorted(table.user_ids) == sorted(want.user_ids)
    np.testing.assert_allclose(frame_of(table)[list(FEATURE_SPEC.names)].to_numpy(),
                               frame_of(want)[list(FEATURE_SPEC.names)].to_numpy(), rtol=1e-12)
    assert table.aggs is not None and len(table.aggs) == len(table)
    # as of 10 days before the end: the early records
    T = log_a.end_ms - 10 * DAY_MS
    past = table_from_messages(msgs, PARAMS, "features", T)
    assert set(past.user_ids) == set(early.users) and (past.last_event_ms <= T).all()
    with pytest.raises(RecordMismatch, match="a record on features"):
        table_from_messages(messages(early.users, early.aggs, OTHER), PARAMS, "features")
    with pytest.raises(ValueError, match="holds no aggregate records"):
        table_from_messages([], PARAMS, "features")


def test_features_file_is_read_at_its_own_as_of(log_a: RealLog, tmp_path: Path) -> None:
    """A `segstream features --out` file: read as it is; another --as-of is refused."""
    T = log_a.end_ms - 5 * DAY_MS
    path = tmp_path / "features.parquet"
    cut_at(log_a, T).to_parquet(path, index=False)
    table = read_table(path, PARAMS)
    assert table.as_of_ms == T and table.feature_params == PARAMS.describe()
    assert read_table(path, PARAMS, T).as_of_ms == T
    with pytest.raises(ValueError, match=r"is evaluated as of .* not the requested"):
        read_table(path, PARAMS, log_a.end_ms)
    with pytest.raises(RecordMismatch, match=f"{OTHER.fingerprint:08x}"):
        read_table(path, OTHER)
    other_vocab = FeatureParams(vocabulary=Vocabulary(mobile_platforms=("phone",)))
    with pytest.raises(RecordMismatch):
        read_table(path, other_vocab)


@pytest.mark.parametrize(("change", "message"), [
    (lambda df: df.drop(columns=["agg"]), "no agg column"),
    (lambda df: df.drop(columns=["as_of_ms"]), "no as_of_ms column"),
    (lambda df: df.assign(spec_version="v1"), "'v1'"),
    (lambda df: pd.concat([df, df.iloc[:1]]), "several rows for user"),
    (lambda df: df.assign(as_of_ms=df["as_of_ms"] + np.arange(len(df)) % 2), "mixes 2"),
    (lambda df: df.assign(recency_days=np.nan), r"recency_days of user .* is nan"),
])
def test_features_file_problems_are_named(log_a: RealLog, tmp_path: Path, change: object,
                                          message: str) -> None:
    df = change(cut_at(log_a, log_a.end_ms))  # type: ignore[operator]
    path = tmp_path / "bad.parquet"
    df.to_parquet(path, index=False)
    with pytest.raises((ValueError, FeatureSpecMismatch), match=message):
        read_table(path, PARAMS)


def test_a_missing_or_foreign_path_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="segstream features"):
        read_table(tmp_path / "nope.parquet", PARAMS)
    csv = tmp_path / "f.csv"
    csv.write_text("user_id,recency_days\nu,1\n")
    with pytest.raises(ValueError, match="is not a Parquet file"):
        read_table(csv, PARAMS)
    with pytest.raises(ValueError, match="holds no Parquet history files"):
        read_table(tmp_path, PARAMS)


def test_table_from_aggregates_evaluates_every_record_at_one_time(log_a: RealLog) -> None:
    aggs = log_a.state.aggs[:5]
    t = table_from_aggregates(np.asarray(log_a.state.users[:5], dtype=object), aggs,
                              log_a.end_ms, PARAMS)
    assert t.X.shape == (5, len(FEATURE_SPEC)) and t.as_of_ms == log_a.end_ms
    assert t.aggs is not None and encode(t.aggs, PARAMS) == encode(aggs, PARAMS)
