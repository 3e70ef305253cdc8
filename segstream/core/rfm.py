"""RFM scores and groups: the marketer's playbook beside the learned segment.

* **Scores 1-5** from quintile edges fitted on the users who purchased (at training
  time, stored in the model, so serving scores a user without scanning anyone):
  R from days since the last purchase (fewer days, higher score), F from lifetime
  orders, M from lifetime spend (more, higher). A value equal to an edge falls in the
  quintile below it, so the many one-order buyers share F 1.
* **Groups** from R and FM, the rounded-up mean of F and M, on the R x FM grid of the
  common RFM playbook (:data:`GRID`). Users who never purchased are ``Prospect``,
  with null scores.

>>> import numpy as np
>>> edges = fit_edges(np.arange(1.0, 101.0), np.arange(1.0, 101.0), np.arange(1.0, 101.0))
>>> score(edges, np.array([3.0]), np.array([99.0]), np.array([99.0]), np.array([1.0]))
[(5, 5, 5, 'Champions')]
>>> score(edges, np.array([90.0, np.nan]), np.array([2.0, 0.0]), np.array([1.0, 0.0]),
...       np.array([1.0, 0.0]))
[(1, 1, 1, 'Lost'), (None, None, None, 'Prospect')]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: The feature each score reads.
R_FEATURE, F_FEATURE, M_FEATURE = "purchase_recency_days", "lifetime_orders", "lifetime_spend"
PROSPECT = "Prospect"

#: (group, R scores, FM scores, what its members did), first match wins. R and FM are
#: 1-5; every (R, FM) pair has exactly one group (a test walks the grid).
GRID: tuple[tuple[str, tuple[int, ...], tuple[int, ...], str], ...] = (
    ("Champions", (5,), (4, 5), "bought recently, often and for a lot"),
    ("Loyal", (3, 4, 5), (3, 4, 5), "buy regularly and spend well"),
    ("Potential Loyalist", (4, 5), (2,), "recent buyers with a few orders"),
    ("New Customers", (5,), (1,), "bought for the first time, just now"),
    ("Promising", (4,), (1,), "bought recently, once and for little"),
    ("Need Attention", (3,), (2,), "average on all three, slipping"),
    ("About to Sleep", (3,), (1,), "a small order a while ago"),
    ("Can't Lose Them", (1, 2), (5,), "were the best buyers, have not come back"),
    ("At Risk", (1, 2), (3, 4), "bought often and well, long ago"),
    ("Hibernating", (2,), (1, 2), "small, infrequent and a while ago"),
    ("Lost", (1,), (1, 2), "lowest on every count"),
)
GROUPS: tuple[str, ...] = (*(g for g, *_ in GRID), PROSPECT)
DEFINITIONS: dict[str, str] = {g: what for g, _, _, what in GRID} | {
    PROSPECT: "have never purchased"}
_TABLE = {(r, fm): g for g, rs, fms, _ in reversed(GRID) for r in rs for fm in fms}


def fit_edges(recency_days: np.ndarray, orders: np.ndarray, spend: np.ndarray
              ) -> dict[str, list[float]]:
    """The 20/40/60/80th percentiles of each measure over the purchasers given."""
    q = [20, 40, 60, 80]
    return {name: np.percentile(np.asarray(v, dtype=float), q).tolist()
            for name, v in ((R_FEATURE, recency_days), (F_FEATURE, orders), (M_FEATURE, spend))}


def group_of(r: int, fm: int) -> str:
    return _TABLE[(r, fm)]


def score(edges: dict[str, Any], recency_days: np.ndarray, orders: np.ndarray,
          spend: np.ndarray, purchased: np.ndarray) -> list[tuple[int | None, int | None,
                                                                 int | None, str]]:
    """(R, F, M, group) per user; ``purchased`` is the ``has_purchased`` flag."""
    R = 5 - np.searchsorted(np.asarray(edges[R_FEATURE]), recency_days, side="left")
    F = 1 + np.searchsorted(np.asarray(edges[F_FEATURE]), orders, side="left")
    M = 1 + np.searchsorted(np.asarray(edges[M_FEATURE]), spend, side="left")
    out: list[tuple[int | None, int | None, int | None, str]] = []
    for r, f, m, p in zip(R.tolist(), F.tolist(), M.tolist(), np.asarray(purchased).tolist(),
                          strict=True):
        if p != 1.0:
            out.append((None, None, None, PROSPECT))
        else:
            out.append((r, f, m, group_of(r, math.ceil((f + m) / 2))))
    return out
