"""Churn examples from the Parquet history (training/churn_data.py): labels against the
log and the generator's truth, nothing after T in a snapshot's features, the time split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segstream.adapters import history
from segstream.core.contract import DAY_MS, FEATURE_SPEC
from segstream.training.churn_data import (
    examples,
    horizon_ms,
    labelled_snapshot,
    snapshot_times,
    train_test,
)
from segstream.training.data import read_history
from tests.support.churn_logs import churn_history, churn_log
from tests.support.real_logs import PARAMS, RealLog

H_DAYS = 14.0


@pytest.fixture(scope="module")
def log() -> RealLog:
    return churn_log(300, seed=11)


@pytest.fixture(scope="module")
def hist(log: RealLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return churn_history(tmp_path_factory.mktemp("churn") / "history", log)


def end_of_day(log: RealLog, day: int) -> int:
    return log.log.start_ms // DAY_MS * DAY_MS + day * DAY_MS - 1


def from_the_log(log: RealLog, T: int, purchase: bool = False) -> tuple[set[str], set[str]]:
    """(users with an accepted event by T, users with an event or purchase in (T, T+N])."""
    v = log.valid
    ts = v["ts"].to_numpy(np.int64)
    later = v[(ts > T) & (ts <= T + horizon_ms(H_DAYS))]
    if purchase:
        later = later[later["event_type"] == "purchase"]
    return set(v.loc[ts <= T, "user_id"]), set(later["user_id"])


def test_labels_are_what_the_log_did_after_T(log: RealLog, hist: Path) -> None:
    T = end_of_day(log, 40)
    ex = labelled_snapshot(hist, PARAMS, T, "activity", H_DAYS)
    known, active = from_the_log(log, T)
    assert set(ex.user_ids) == known and len(ex) == len(known)
    expected = np.array([u not in active for u in ex.user_ids], dtype=np.int8)
    np.testing.assert_array_equal(ex.y, expected)
    assert 0.1 < ex.churn_rate < 0.5, ex.churn_rate
    # purchase label: no purchase in the window; silent users bought nothing either
    bought = labelled_snapshot(hist, PARAMS, T, "purchase", H_DAYS)
    _, buyers = from_the_log(log, T, purchase=True)
    np.testing.assert_array_equal(bought.user_ids, ex.user_ids)
    np.testing.assert_array_equal(bought.y, [u not in buyers for u in ex.user_ids])
    assert (bought.y >= ex.y).all() and bought.y.sum() > ex.y.sum()


def test_labels_agree_with_the_generators_truth(log: RealLog, hist: Path) -> None:
    T = end_of_day(log, 45)
    ex = labelled_snapshot(hist, PARAMS, T, "activity", H_DAYS)
    truth = [log.log.truth[u] for u in ex.user_ids]
    stopped = np.array([t.stops_ms is not None and t.stops_ms <= T for t in truth])
    assert stopped.sum() >= 20
    assert ex.y[stopped].all()  # a user the generator stopped before T is churned
    steady = np.array([t.stops_ms is None and t.persona == "power_user" for t in truth])
    assert steady.sum() >= 20 and not ex.y[steady].any()  # ~1 session a day: never silent


def test_nothing_after_T_leaks_into_the_features(log: RealLog, hist: Path,
                                                 tmp_path: Path) -> None:
    T = end_of_day(log, 33)
    full = labelled_snapshot(hist, PARAMS, T, "activity", H_DAYS)
    # the log as it was known at T: every event after T removed
    cut = churn_history(tmp_path / "cut", log, until_ms=T)
    known = read_history(cut, PARAMS, T)
    a, b = np.argsort(full.user_ids), np.argsort(known.user_ids)
    np.testing.assert_array_equal(full.user_ids[a], known.user_ids[b])
    np.testing.assert_array_equal(full.X[a], known.X[b])  # bit for bit (NaN = NaN)
    assert full.y.sum() > 0  # ...while the labels did see the later events
    # and the history cut at T cannot label T: its window is not over
    with pytest.raises(ValueError, match="needs events up to"):
        labelled_snapshot(cut, PARAMS, T, "activity", H_DAYS)


def test_time_split_trains_only_on_windows_closed_before_the_test(log: RealLog,
                                                                   hist: Path) -> None:
    first_ms, stream_ms = history.time_span(hist)
    train, test = train_test(hist, PARAMS, "activity", H_DAYS, 7.0, 1)
    H = horizon_ms(H_DAYS)
    (t_test,) = test.times
    assert t_test + H <= stream_ms < t_test + H + DAY_MS  # the newest labelled day
    assert all((t + 1) % DAY_MS == 0 for t in train.times + test.times)  # ends of days
    assert max(train.times) + H <= t_test  # every training label known at the test time
    assert np.diff(train.times).tolist() == [7 * DAY_MS] * (len(train.times) - 1)
    # back while a week of history lies before T
    assert min(train.times) - 7 * DAY_MS < first_ms + 7 * DAY_MS <= min(train.times)
    assert len(train.times) == 8  # 90 days: T every 7 days from day 13, 69 not labelled by 76
    assert set(np.unique(train.as_of_ms)) == set(train.times)
    assert train.X.shape[1] == len(FEATURE_SPEC) and train.label == "activity"
    # the same rows as one snapshot at a time
    one = labelled_snapshot(hist, PARAMS, train.times[3], "activity", H_DAYS)
    np.testing.assert_array_equal(train.at([train.times[3]]).y, one.y)
    # two test snapshots: training ends one window before the first
    train2, test2 = train_test(hist, PARAMS, "activity", H_DAYS, 7.0, 2)
    assert test2.times == [t_test - 7 * DAY_MS, t_test]
    assert max(train2.times) + H <= test2.times[0]
    # as if the history ended 10 days earlier
    _, early = train_test(hist, PARAMS, "activity", H_DAYS, 7.0, 1, end_ms=stream_ms - 10 * DAY_MS)
    assert early.times[0] <= t_test - 10 * DAY_MS
    with pytest.raises(ValueError, match="before the requested end"):
        train_test(hist, PARAMS, "activity", H_DAYS, 7.0, 1, end_ms=stream_ms + 1)


def test_too_short_a_history_is_refused_with_what_it_needs() -> None:
    start = 1_800_000_000_000
    with pytest.raises(ValueError, match=r"spans 20\.0 days.*need about 42 days"):
        snapshot_times(start, start + 20 * DAY_MS, 14, 7, 1)


def test_an_unlabelled_time_and_an_unknown_label_are_refused(log: RealLog,
                                                             hist: Path) -> None:
    _, stream_ms = history.time_span(hist)
    with pytest.raises(ValueError, match="the history ends at"):
        examples(hist, PARAMS, [stream_ms - DAY_MS], "activity", H_DAYS)
    with pytest.raises(ValueError, match="churn label must be one of"):
        labelled_snapshot(hist, PARAMS, end_of_day(log, 30), "visits", H_DAYS)
