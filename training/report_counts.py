"""The counts ``segstream report`` shows: the R x F grid of the buyers, crosstabs of
segments against RFM groups or other assignments, the migration over time."""



import numpy as np

from segstream.core.segment_model import SegmentModel
from segstream.training.data import FeatureTable


def rf_grid(scores: list[tuple[int | None, int | None, int | None, str]]
            ) -> tuple[np.ndarray, int]:
    """Buyers per (R, F) score, rows R 5..1 and columns F 1..5, and the Prospects.

    >>> grid, prospects = rf_grid([(5, 1, 2, "New Customers"), (None, None, None, "Prospect")])
    >>> int(grid[0, 0]), int(grid.sum()), prospects
    (1, 1, 1)
    """
    grid = np.zeros((5, 5), dtype=np.int64)
    prospects = 0
    for r, f, _, _ in scores:
        if r is None or f is None:
            prospects += 1
        else:
            grid[5 - r, f - 1] += 1
    return grid, prospects


def crosstab(rows: np.ndarray, n_rows: int, cols: np.ndarray, n_cols: int) -> np.ndarray:
    out = np.zeros((n_rows, n_cols), dtype=np.int64)
    np.add.at(out, (rows, cols), 1)
    return out


def time_migration(model: SegmentModel, earlier: FeatureTable, table: FeatureTable,
                   labels: np.ndarray) -> np.ndarray:
    """Segment as of the earlier time (last row: not seen by then) x segment as of T."""
    at = {u: int(r) for u, r in zip(earlier.user_ids, model.assign(earlier.X).index,
                                    strict=True)}
    before = np.array([at.get(u, model.k) for u in table.user_ids], dtype=np.int64)
    return crosstab(before, model.k + 1, labels, model.k)
