from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.training.synth import persona_features
from training.data import FeatureTable, table_from_frame


@pytest.fixture(scope="session")
def labelled() -> tuple[FeatureTable, np.ndarray, pd.DataFrame]:
    df, labels = persona_features(3000, seed=1)
    return table_from_frame(df, "synth"), labels, df


@pytest.fixture(scope="session")
def labelled_again() -> tuple[FeatureTable, np.ndarray]:
    df, labels = persona_features(3000, seed=2)
    return table_from_frame(df, "synth-2"), labels
