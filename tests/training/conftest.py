from __future__ import annotations

import numpy as np
import pytest

from segstream.training.data import FeatureTable
from tests.support.real_logs import RealLog, real_log

#: ~100 events per user, as in the benchmark, at a size that keeps the tests fast
USERS, EVENTS = 600, 60_000


@pytest.fixture(scope="session")
def log_a() -> RealLog:
    return real_log(USERS, EVENTS, seed=1)


@pytest.fixture(scope="session")
def labelled(log_a: RealLog) -> tuple[FeatureTable, np.ndarray]:
    """Every user of a generated log as of its end, and the persona truth."""
    table = log_a.table()
    return table, log_a.labels(table.user_ids)


@pytest.fixture(scope="session")
def labelled_again() -> tuple[FeatureTable, np.ndarray]:
    """Another sample of the same behaviour (another seed)."""
    log = real_log(USERS, EVENTS, seed=2)
    table = log.table()
    return table, log.labels(table.user_ids)
