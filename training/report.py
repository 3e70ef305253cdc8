"""``segstream report``: one self-contained HTML page (PNG plots inlined as base64) about a
model version and the real users it segments.

Every user drawn or counted is a row of one snapshot, every user as of ``T`` read from
the Parquet history or a features file (``training/data.py``); nothing is simulated. A
page without a snapshot is not drawn: :class:`Inputs` requires one.

Sections, each of the snapshot's users assigned with the reported model:

* the member table: persona, description, share, buyers, median orders, spend, order
  value, days since the last visit and the top RFM groups, from the members' own rows
  (``training/profiles.build_profiles``, the statistics training stores);
* radar charts of the members' medians, each axis as the percentile of all users
  (purchase axes: of all buyers), so axes of days, orders and currency share one scale;
* the R x F grid of the buyers on the model's RFM edges (``core/rfm.py``), Prospects
  counted beside it, and the segment x RFM group counts;
* PCA (and UMAP when ``umap`` is installed) of a sample of the users, at most
  ``max_points``, the sample size in the title;
* migration matrices: the same users assigned by another version (``previous``), and
  the same source as of an earlier time (``earlier``) assigned by this model;
* from the registry's tags: segment shares across versions, the k-selection curves.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from segstream.adapters.registry import VersionInfo
from segstream.core import rfm
from segstream.core.contract import FEATURE_SPEC, PURCHASED
from segstream.core.segment_model import SegmentModel
from segstream.core.times import format_time
from segstream.training.data import FeatureTable
from segstream.training.naming import describe
from segstream.training.profiles import build_profiles

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


@dataclass(frozen=True)
class Inputs:
    """What a report is drawn from: a model, the real users of one snapshot, and what
    to compare them with (``notes`` says why a comparison is missing)."""

    model: SegmentModel
    table: FeatureTable  # the snapshot as of T: every user drawn is one of its rows
    versions: Sequence[VersionInfo] = ()
    previous: SegmentModel | None = None  # another version, assigning the same users
    earlier: FeatureTable | None = None  # the same source as of a time before T
    notes: Mapping[str, str] = field(default_factory=dict)  # "versions", "times": why not


@dataclass(frozen=True)
class Report:
    """The written page and the counts it shows (rows/columns as on the page)."""

    path: Path
    users: int
    plotted: np.ndarray  # user ids drawn in the PCA (the sample)
    rf_grid: np.ndarray  # buyers per score: rows R 5..1, columns F 1..5
    prospects: int
    profiles: list[dict[str, Any]]  # the members of each segment row (build_profiles)
    segment_groups: np.ndarray  # segment row x rfm.GROUPS
    radar: np.ndarray  # segment row x RADAR_AXES, 0..1
    migrations: dict[str, np.ndarray]  # "versions", "times": from row x to column
    figures: tuple[str, ...]


def label(model: SegmentModel, row: int) -> str:
    return f"{model.segment_ids[row]}: {model.personas[row]}"


def _iso(ms: int | None) -> str:
    return "unknown time" if ms is None else format_time(int(ms), "seconds")


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _colour(row: int) -> Any:
    import matplotlib.pyplot as plt

    return plt.get_cmap("tab10" if row < 10 else "tab20")(row % 20)


# ------------------------------------------------------------------ counts


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


# ------------------------------------------------------------------ plots


def _rf_heatmap(grid: np.ndarray, prospects: int, edges: Mapping[str, list[float]]) -> str:
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
    return _png(fig)


def _scatter(model: SegmentModel, Z: np.ndarray, labels: np.ndarray, take: np.ndarray,
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
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, color=_colour(row),
                       label=f"{label(model, row)} ({int(m.sum()):,})")
        if name == "PCA":
            c = pca.transform(model.centroids)
            ax.scatter(c[:, 0], c[:, 1], marker="x", c="black", s=70, label="segment centres")
            ax.set_xlabel(f"PC1 ({ev[0]:.0%} of the variance)")
            ax.set_ylabel(f"PC2 ({ev[1]:.0%} of the variance)")
        title = f"{name} of {what}, coloured by segment"
        ax.set_title(title)
        ax.legend(fontsize=8, markerscale=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        out.append((title, _png(fig)))
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


def _radars(model: SegmentModel, values: np.ndarray) -> str:
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
        ax.plot(ring, np.r_[vals, vals[:1]], color=_colour(i))
        ax.fill(ring, np.r_[vals, vals[:1]], color=_colour(i), alpha=0.3)
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
    return _png(fig)


def _sizes(model: SegmentModel, versions: Sequence[VersionInfo]) -> str | None:
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
               color=_colour(rows[sid] if sid in rows else next(others)))
        bottom += vals
    ax.set_xticks(xs)
    ax.set_xlabel("model version")
    ax.set_ylabel("share of training users")
    ax.set_title("Segment shares across versions (stable ids; registry tags)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def _k_curves(rows: list[dict[str, float]]) -> str | None:
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
    return _png(fig)


# ------------------------------------------------------------------ HTML


def _e(text: Any) -> str:
    return html.escape(str(text))


def _count(v: Any) -> str:
    """A metric or count: integers with thousands separators, others to 4 digits."""
    if isinstance(v, int | float) and float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _member_table(model: SegmentModel, profiles: list[dict[str, Any]]) -> str:
    head = ("id", "persona", "description", "share", "users", "buyers", "median orders",
            "median spend", "median order value", "median days since visit",
            "top RFM groups")
    rows = []
    for i, p in enumerate(profiles):
        k = p["kpis"]
        groups = sorted(p["rfm_groups"].items(), key=lambda kv: -kv[1])[:2]
        top = ", ".join(f"{g} {n / max(p['size'], 1):.0%}" for g, n in groups if n)
        cells = (p["segment_id"], model.personas[i], describe(p) if p["size"] else "no members",
                 f"{p['share']:.1%}", f"{p['size']:,}", f"{k['buyer_share']:.0%}",
                 _num(k["median_orders"], "g"), _num(k["median_spend"], ",.2f"),
                 _num(k["median_order_value"], ",.2f"),
                 _num(k["median_days_since_visit"], ".1f"), top or "-")
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return ("<table class='kpi'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>")


def matrix_html(row_names: Sequence[str], col_names: Sequence[str], counts: np.ndarray,
                same: Callable[[int, int], bool] = lambda i, j: False,
                corner: str = "from \\ to") -> str:
    """A count table shaded by each row's share (a heat map in text); ``same`` cells
    (the user kept the segment) are outlined."""
    out = [f"<table class='matrix'><tr><th>{_e(corner)}</th>",
           *(f"<th>{_e(c)}</th>" for c in col_names), "<th>total</th></tr>"]
    for i, name in enumerate(row_names):
        total = int(counts[i].sum())
        out.append(f"<tr><th>{_e(name)}</th>")
        for j, n in enumerate(counts[i]):
            share = n / total if total else 0.0
            style = f"background:rgba(31,119,180,{0.85 * share:.2f})"
            if share > 0.55:
                style += ";color:white"
            if same(i, j):
                style += ";outline:2px solid #333;outline-offset:-2px"
            out.append(f"<td style='{style}' title='{share:.0%} of the row'>{int(n):,}</td>")
        out.append(f"<td>{total:,}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _version_section(inputs: Inputs, labels: np.ndarray, counts: dict[str, np.ndarray]
                     ) -> str:
    model, prev = inputs.model, inputs.previous
    if prev is None:
        return f"<p>{_e(inputs.notes.get('versions', 'No other version to compare with.'))}</p>"
    before = prev.assign(inputs.table.X).index
    m = crosstab(before, prev.k, labels, model.k)
    counts["versions"] = m
    kept = sum(int(m[i, j]) for i in range(prev.k) for j in range(model.k)
               if prev.segment_ids[i] == model.segment_ids[j])
    rows = [f"v{prev.version} {label(prev, i)}" for i in range(prev.k)]
    cols = [f"v{model.version} {label(model, j)}" for j in range(model.k)]
    return (f"<p>The same {len(labels):,} users assigned by version {_e(prev.version)} (rows) "
            f"and version {_e(model.version)} (columns): {kept / max(len(labels), 1):.1%} keep "
            "their segment id (outlined).</p>"
            + matrix_html(rows, cols, m, lambda i, j: prev.segment_ids[i] == model.segment_ids[j]))


def _time_section(inputs: Inputs, labels: np.ndarray, counts: dict[str, np.ndarray]) -> str:
    model, early = inputs.model, inputs.earlier
    if early is None:
        return f"<p>{_e(inputs.notes.get('times', 'No earlier snapshot given.'))}</p>"
    m = time_migration(model, early, inputs.table, labels)
    counts["times"] = m
    seen = int(m[:-1].sum())
    kept = int(np.trace(m[:-1]))
    rows = [f"{label(model, i)}" for i in range(model.k)] + [
        f"not seen by {_iso(early.as_of_ms)}"]
    cols = [label(model, j) for j in range(model.k)]
    return (f"<p>Users as of {_e(_iso(early.as_of_ms))} (rows; {seen:,} users) and as of "
            f"{_e(_iso(inputs.table.as_of_ms))} (columns), both assigned by version "
            f"{_e(model.version)}: {kept / max(seen, 1):.1%} of those seen at the earlier time "
            f"are in the same segment; {int(m[-1].sum()):,} are new since.</p>"
            + matrix_html(rows, cols, m, lambda i, j: i == j))


STYLE = """body{font-family:sans-serif;max-width:1300px;margin:auto;padding:0 12px}
img{max-width:100%}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}
table.matrix td{text-align:right;min-width:44px}.note{color:#a33}"""


def write_report(out: Path, inputs: Inputs, *, seed: int = 0, max_points: int = 2000
                 ) -> Report:
    """Write ``out/index.html`` from the real users of ``inputs.table``."""
    import matplotlib

    matplotlib.use("Agg")
    model, table = inputs.model, inputs.table
    if len(table) == 0:
        raise ValueError(f"{table.source} holds no users to report on")
    a = model.assign(table.X)
    labels = a.index
    scores = model.rfm(table.X)
    profiles = build_profiles(table.X, a.z, labels, model.centroids, model.segment_ids,
                              [g for *_, g in scores])
    grid, prospects = rf_grid(scores)
    seg_groups = np.array([[p["rfm_groups"][g] for g in rfm.GROUPS] for p in profiles],
                          dtype=np.int64).reshape(model.k, len(rfm.GROUPS))
    radar = radar_values(table.X, profiles)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(len(table), size=min(max_points, len(table)), replace=False))
    scatters = _scatter(model, a.z, labels, take, len(table), seed)
    registry_figs = [(t, png) for t, png in (
        ("Segment shares across versions", _sizes(model, inputs.versions)),
        ("k selection", _k_curves(model.info.get("k_selection") or []))) if png]
    figures = [("Members' medians", _radars(model, radar)),
               ("R x F grid", _rf_heatmap(grid, prospects, model.rfm_edges)),
               *scatters, *registry_figs]
    migrations: dict[str, np.ndarray] = {}
    versions_html = _version_section(inputs, labels, migrations)
    times_html = _time_section(inputs, labels, migrations)
    groups_html = matrix_html([label(model, i) for i in range(model.k)], rfm.GROUPS, seg_groups,
                              corner="segment \\ RFM group")
    src = dict(figures)

    def img(title: str, heading: str = "h2") -> str:
        return f"<{heading}>{_e(title)}</{heading}><img alt='{_e(title)}' src='{src[title]}'>"

    at = _e(_iso(table.as_of_ms))
    metrics = ", ".join(f"{k} = {_count(v)}" for k, v in model.metrics.items())
    warning = inputs.notes.get("warning")
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>segstream model {_e(model.version)}</title><style>{STYLE}</style></head><body>
<h1>Segment model version {_e(model.version)} (spec {_e(model.spec_version)}, k = {model.k})</h1>
<p>Trained on {_e(_count(model.info.get("rows", "?")))} users as of
{_e(_iso(model.info.get("as_of_ms")))}. {_e(metrics)}</p>
<p>Users: the {len(table):,} users of {_e(table.source)} as of {at}, each assigned by this
version. Every figure and count below is of these users.</p>
{f"<p class='note'>{_e(warning)}</p>" if warning else ""}
<h2>Segments: their members as of {at}</h2>
<p>Medians over the members; orders, spend and order value over the members who bought
(spend in the log's currency units).</p>
{_member_table(model, profiles)}
{img("Members' medians")}
<p>Each axis is the members' median as its percentile among all {len(table):,} users (0 at
the centre, the highest user at the rim; rings at 25, 50 and 75 %); orders, spend and
order value among all buyers, and at the centre when fewer than {MIN_VALUES} members
bought; <i>bought</i> is the share of the members who bought.</p>
<h2>RFM</h2><p>Scores on the model's quintile edges of its training buyers
(<code>rfm_edges</code>): R 5 bought most recently, F 5 ordered most.</p>
{img("R x F grid", "h3")}
<h3>Segments x RFM groups (users; shaded by the share of the segment)</h3>
{groups_html}
<p>{"; ".join(f"<b>{_e(g)}</b>: {_e(rfm.DEFINITIONS[g])}" for g in rfm.GROUPS)}.</p>
<h2>Users in two dimensions</h2>{"".join(img(t, "h3") for t, _ in scatters)}
<h2>Migration between versions</h2>{versions_html}
<h2>Migration over time</h2>{times_html}
{"<h2>Registry</h2>" if registry_figs else ""}{"".join(img(t, "h3") for t, _ in registry_figs)}
</body></html>"""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(page)
    return Report(path, len(table), table.user_ids[take], grid, prospects, profiles,
                  seg_groups, radar, migrations, tuple(t for t, _ in figures))
