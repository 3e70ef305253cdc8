"""The plots of ``segstream report`` (matplotlib, PNG inlined as base64): the R x F heat
map, PCA/UMAP of real users, radar charts of member medians as percentiles, segment
shares across versions, the k-selection curves."""


import base64
import io
import itertools
import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from segstream.adapters.registry import VersionInfo
from segstream.core import rfm
from segstream.core.contract import FEATURE_SPEC, PURCHASED
from segstream.core.segment_model import SegmentModel
from segstream.core.times import format_time

#: Radar axes: (feature, label), see :func:`radar_values`.
RADAR_AXES: tuple[tuple[str, str], ...] = (
    (PURCHASED, "bought"), ("recency_days", "days since\nvisit"),
    ("session_rate_long", "sessions\na day"), ("active_days", "active\ndays"),
    ("tenure_days", "tenure"),
    ("events_per_session", "events a\nsession"), ("dwell_mean", "dwell"),
    ("search_ratio", "search\nshare"), ("cart_ratio", "cart\nshare"),
    ("lifetime_orders", "orders"), ("lifetime_spend", "spend"),
    ("avg_order_value", "order\nvalue"),
)
MIN_VALUES = 5


def label(model: SegmentModel, row: int) -> str:
    return f"{model.segment_ids[row]}: {model.personas[row]}"


def at_text(ms: int | None) -> str:
    return "unknown time" if ms is None else format_time(int(ms), "seconds")


def png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def colour(row: int) -> Any:
    import matplotlib.pyplot as plt

    return plt.get_cmap("tab10" if row < 10 else "tab20")(row % 20)


def rf_heatmap(grid: np.ndarray, prospects: int, edges: Mapping[str, list[float]]) -> str:
    import matplotlib.pyplot as plt

    def ranges(values: list[float], unit: str) -> list[str]:
        """The five quintile spans of four edges (an edge value falls below it)."""
        e = [f"{v:.3g}" for v in values]
        spans = [f"≤ {e[0]} {unit}",
                 *(f"> {a}, ≤ {b}" if a != b else "(none)" for a, b in itertools.pairwise(e)),
                 f"> {e[-1]} {unit}"]
        return spans

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    im = ax.imshow(grid, cmap="Blues")
    top = grid.max() if grid.size else 0
    for (i, j), n in np.ndenumerate(grid):
        ax.text(j, i, f"{n:,}", ha="center", va="center", fontsize=9,
                color="white" if top and n > top * 0.6 else "black")
    r_ticks = [f"R {5 - i}" for i in range(5)]
    f_ticks = [f"F {j + 1}" for j in range(5)]
    if edges:
        r_ticks = [f"{t}\n{s}" for t, s in zip(r_ticks, ranges(
            edges[rfm.R_FEATURE], "days"), strict=True)]
        f_ticks = [f"{t}\n{s}" for t, s in zip(f_ticks, ranges(
            edges[rfm.F_FEATURE], "orders"), strict=True)]
    ax.set_yticks(range(5), r_ticks, fontsize=8)
    ax.set_xticks(range(5), f_ticks, fontsize=8)
    ax.set_ylabel("R: days since the last purchase")
    ax.set_xlabel("F: lifetime orders")
    ax.set_title(f"R x F of the {int(grid.sum()):,} buyers; Prospects (never purchased, "
                 f"not in the grid): {prospects:,}", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="buyers")
    return png(fig)


def scatter_plot(model: SegmentModel, Z: np.ndarray, labels: np.ndarray, take: np.ndarray,
             n_users: int, seed: int) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    pca = PCA(2, random_state=seed).fit(Z)
    ev = pca.explained_variance_ratio_
    emb = {"PCA": pca.transform(Z[take])}
    try:
        import umap  # type: ignore[import-not-found]

        emb["UMAP"] = umap.UMAP(random_state=seed).fit_transform(Z[take])
    except ImportError:
        pass
    what = (f"all {n_users:,} users" if len(take) == n_users
            else f"{len(take):,} of {n_users:,} users")
    out = []
    for name, xy in emb.items():
        fig, ax = plt.subplots(figsize=(9, 6))
        for row in range(model.k):
            m = labels[take] == row
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, color=colour(row),
                       label=f"{label(model, row)} ({int(m.sum()):,})")
        if name == "PCA":
            c = pca.transform(model.centroids)
            ax.scatter(c[:, 0], c[:, 1], marker="x", c="black", s=70, label="segment centres")
            ax.set_xlabel(f"PC1 ({ev[0]:.0%} of the variance)")
            ax.set_ylabel(f"PC2 ({ev[1]:.0%} of the variance)")
        title = f"{name} of {what}, coloured by segment"
        ax.set_title(title)
        ax.legend(fontsize=8, markerscale=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        out.append((title, png(fig)))
    return out


def percentile_of(population: np.ndarray, value: float | None) -> float:
    """Where ``value`` sits among ``population`` (0 lowest .. 1 highest; ties halved).

    >>> percentile_of(np.array([1.0, 2.0, 3.0, 4.0]), 3.0)
    0.625
    >>> percentile_of(np.array([1.0, 2.0]), None)
    0.0
    """
    if value is None or len(population) == 0:
        return 0.0
    lo = np.searchsorted(population, value, side="left")
    hi = np.searchsorted(population, value, side="right")
    return float((lo + hi) / 2 / len(population))


def radar_values(X: np.ndarray, profiles: list[dict[str, Any]]) -> np.ndarray:
    """Segment x :data:`RADAR_AXES`: the share who bought, then each member median as
    its percentile among all users (a purchase feature: among all buyers, and 0 when
    fewer than :data:`MIN_VALUES` members have a value)."""
    given = FEATURE_SPEC.given_columns
    out = np.zeros((len(profiles), len(RADAR_AXES)))
    for a, (name, _) in enumerate(RADAR_AXES):
        if name == PURCHASED:
            out[:, a] = [p["kpis"]["buyer_share"] for p in profiles]
            continue
        j = FEATURE_SPEC.index(name)
        col = X[:, j] if given[j] < 0 else X[X[:, given[j]] == 1.0, j]
        pop = np.sort(col[~np.isnan(col)])
        for s, p in enumerate(profiles):
            stats = p["members"][name]
            if stats["n"] >= MIN_VALUES:
                out[s, a] = percentile_of(pop, stats["median"])
    return out


def radar_plots(model: SegmentModel, values: np.ndarray) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.projections.polar import PolarAxes

    angles = np.linspace(0, 2 * np.pi, len(RADAR_AXES), endpoint=False)
    ring = np.r_[angles, angles[:1]]
    cols = min(3, model.k)
    rows = int(np.ceil(model.k / cols))
    fig = plt.figure(figsize=(4.6 * cols, 4.4 * rows))
    for i, vals in enumerate(values):
        ax = cast("PolarAxes", fig.add_subplot(rows, cols, i + 1, projection="polar"))
        ax.set_theta_offset(np.pi / 2)
        ax.set_theta_direction(-1)
        ax.plot(ring, np.r_[vals, vals[:1]], color=colour(i))
        ax.fill(ring, np.r_[vals, vals[:1]], color=colour(i), alpha=0.3)
        ax.set_ylim(0, 1)
        ax.set_yticks([0.25, 0.5, 0.75], ["", "", ""])
        ax.set_xticks(angles, [lab for _, lab in RADAR_AXES], fontsize=7.5)
        for tick, angle in zip(ax.get_xticklabels(), angles, strict=True):
            x = np.sin(angle)  # clockwise from the top
            tick.set_horizontalalignment("left" if x > 0.1 else "right" if x < -0.1
                                         else "center")
        ax.tick_params(axis="x", pad=4)
        ax.set_title("\n".join(textwrap.wrap(label(model, i), 34)), fontsize=9, pad=26)
    fig.subplots_adjust(wspace=0.75, hspace=0.5)
    return png(fig)


def share_plot(model: SegmentModel, versions: Sequence[VersionInfo]) -> str | None:
    import matplotlib.pyplot as plt

    points = [(int(v.version), json.loads(v.tags.get("segment_shares", "{}")))
              for v in sorted(versions, key=lambda v: int(v.version))]
    points = [(v, s) for v, s in points if s]
    if not points:
        return None
    ids = sorted({sid for _, s in points for sid in s}, key=int)
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = [v for v, _ in points]
    bottom = np.zeros(len(points))
    rows = {str(sid): row for row, sid in enumerate(model.segment_ids)}
    others = iter(range(model.k, 10 * model.k + len(ids)))
    for sid in ids:
        vals = np.array([s.get(sid, 0.0) for _, s in points])
        ax.bar(xs, vals, bottom=bottom, label=f"segment {sid}",
               color=colour(rows[sid] if sid in rows else next(others)))
        bottom += vals
    ax.set_xticks(xs)
    ax.set_xlabel("model version")
    ax.set_ylabel("share of training users")
    ax.set_title("Segment shares across versions (stable ids; registry tags)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png(fig)


def k_curves(rows: list[dict[str, float]]) -> str | None:
    import matplotlib.pyplot as plt

    if not rows:
        return None
    ks = [r["k"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3))
    for ax, key in zip(axes, ("silhouette", "calinski_harabasz", "davies_bouldin", "inertia"),
                       strict=True):
        ax.plot(ks, [r[key] for r in rows], marker="o")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("k")
    fig.subplots_adjust(wspace=0.35)
    return png(fig)
