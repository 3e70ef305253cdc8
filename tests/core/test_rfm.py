"""RFM scores and groups (segstream/core/rfm.py): the grid is complete, scores follow
the quintile edges, never-buyers are Prospects with no scores."""

from __future__ import annotations

import numpy as np
import pytest

from segstream.core import rfm


def test_every_r_fm_pair_has_exactly_one_group() -> None:
    hits: dict[tuple[int, int], list[str]] = {}
    for group, rs, fms, _ in rfm.GRID:
        for r in rs:
            for fm in fms:
                hits.setdefault((r, fm), []).append(group)
    assert sorted(hits) == [(r, fm) for r in range(1, 6) for fm in range(1, 6)]
    # first match wins where two rows overlap: Champions before Loyal at R 5
    assert rfm.group_of(5, 5) == "Champions" and rfm.group_of(4, 5) == "Loyal"
    assert set(rfm.GROUPS) == {g for g, *_ in rfm.GRID} | {rfm.PROSPECT}
    assert len(rfm.GROUPS) == 12 and set(rfm.DEFINITIONS) == set(rfm.GROUPS)


def test_scores_follow_the_quintile_edges_of_the_buyers() -> None:
    rng = np.random.default_rng(0)
    recency, orders = rng.exponential(30, 1000), rng.integers(1, 20, 1000).astype(float)
    spend = orders * rng.lognormal(3, 1, 1000)
    edges = rfm.fit_edges(recency, orders, spend)
    scored = rfm.score(edges, recency, orders, spend, np.ones(1000))
    R = np.array([s[0] for s in scored])
    F = np.array([s[1] for s in scored])
    for s in range(1, 6):  # each score holds about a fifth of the buyers
        assert abs((s == R).mean() - 0.2) < 0.02
    # fewer days since the purchase, a higher R; more orders, a higher F
    assert np.corrcoef(R, recency)[0, 1] < -0.8 and np.corrcoef(F, orders)[0, 1] > 0.8


@pytest.mark.parametrize(("recency", "orders", "spend", "want"), [
    (1.0, 50.0, 5000.0, (5, 5, 5, "Champions")),
    (1.0, 1.0, 5.0, (5, 1, 1, "New Customers")),
    (500.0, 50.0, 5000.0, (1, 5, 5, "Can't Lose Them")),
    (500.0, 1.0, 5.0, (1, 1, 1, "Lost")),
])
def test_a_buyer_gets_the_group_of_their_scores(recency: float, orders: float, spend: float,
                                                want: tuple[int, int, int, str]) -> None:
    edges = rfm.fit_edges(np.linspace(2, 200, 100), np.linspace(1, 20, 100),
                          np.linspace(10, 2000, 100))
    [got] = rfm.score(edges, np.array([recency]), np.array([orders]), np.array([spend]),
                      np.array([1.0]))
    assert got == want


def test_a_user_who_never_bought_is_a_prospect_with_no_scores() -> None:
    edges = rfm.fit_edges(np.arange(1.0, 11), np.arange(1.0, 11), np.arange(1.0, 11))
    [got] = rfm.score(edges, np.array([np.nan]), np.array([0.0]), np.array([0.0]),
                      np.array([0.0]))
    assert got == (None, None, None, rfm.PROSPECT)
