"""Stable segment ids across model versions.

New centroids are matched to the parent's with the Hungarian algorithm on centroid
distance, measured in the *new* model's scaled space (the parent's centroids are
mapped back to raw units and through the new preprocessor, so a refitted scaler
does not break the match). A pair farther apart than ``max_distance`` is not the
same segment: the new centroid gets a fresh id and the old id is retired. Fresh ids
come from ``next_id``, which only grows, so a retired id is never reused.

Examples
--------
>>> import numpy as np
>>> old = np.array([[0.0, 0.0], [5.0, 5.0]])
>>> new = np.array([[5.1, 5.0], [0.1, 0.0], [-9.0, 9.0]])
>>> m = match_ids(old, (3, 4), new, next_id=5, max_distance=1.0)
>>> m.ids, m.next_id, m.retired, m.new
((4, 3, 5), 6, (), (5,))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segstream.core.segment_model import squared_distances


@dataclass(frozen=True)
class IdMatch:
    ids: tuple[int, ...]  # per new centroid row
    next_id: int
    retired: tuple[int, ...]  # parent ids with no successor
    new: tuple[int, ...]  # ids created for this version
    distances: dict[int, float]  # kept id -> centroid shift


def match_ids(old_centroids: np.ndarray, old_ids: tuple[int, ...], new_centroids: np.ndarray,
              *, next_id: int, max_distance: float) -> IdMatch:
    from scipy.optimize import linear_sum_assignment

    k_new = len(new_centroids)
    ids: list[int | None] = [None] * k_new
    shifts: dict[int, float] = {}
    if len(old_centroids):
        d = np.sqrt(squared_distances(new_centroids, old_centroids))
        rows, cols = linear_sum_assignment(d)
        for r, c in zip(rows, cols, strict=True):
            if d[r, c] <= max_distance:
                ids[r] = int(old_ids[c])
                shifts[int(old_ids[c])] = float(d[r, c])
    created = []
    for r in range(k_new):
        if ids[r] is None:
            ids[r] = next_id
            created.append(next_id)
            next_id += 1
    kept = {i for i in ids if i is not None}
    retired = tuple(int(i) for i in old_ids if i not in kept)
    return IdMatch(tuple(int(i) for i in ids if i is not None), next_id, retired,
                   tuple(created), shifts)
