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
* churn risk per segment (with a churn model: ``Inputs.churn``): its members' mean risk,
  their share in the high band and their commonest reasons, in words;
* from the registry's tags: segment shares across versions, the k-selection curves.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segstream.adapters.registry import VersionInfo
from segstream.core import rfm
from segstream.core.churn_model import ChurnModel
from segstream.core.segment_model import SegmentModel
from segstream.training.churn_eval import churn_by_segment
from segstream.training.data import FeatureTable
from segstream.training.naming import describe
from segstream.training.profiles import build_profiles
from segstream.training.report_counts import crosstab, rf_grid, time_migration
from segstream.training.report_plots import (
    MIN_VALUES,
    at_text,
    k_curves,
    label,
    radar_plots,
    radar_values,
    rf_heatmap,
    scatter_plot,
    share_plot,
)


@dataclass(frozen=True)
class Inputs:
    """What a report is drawn from: a model, the real users of one snapshot, and what
    to compare them with (``notes`` says why a comparison is missing)."""

    model: SegmentModel
    table: FeatureTable  # the snapshot as of T: every user drawn is one of its rows
    versions: Sequence[VersionInfo] = ()
    previous: SegmentModel | None = None  # another version, assigning the same users
    earlier: FeatureTable | None = None  # the same source as of a time before T
    churn: ChurnModel | None = None  # the churn model scoring the same users
    notes: Mapping[str, str] = field(default_factory=dict)  # "versions", "times", "churn"


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
    churn: list[dict[str, Any]] | None = None  # per segment row (churn_by_segment)


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
        f"not seen by {at_text(early.as_of_ms)}"]
    cols = [label(model, j) for j in range(model.k)]
    return (f"<p>Users as of {_e(at_text(early.as_of_ms))} (rows; {seen:,} users) and as of "
            f"{_e(at_text(inputs.table.as_of_ms))} (columns), both assigned by version "
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
    scatters = scatter_plot(model, a.z, labels, take, len(table), seed)
    registry_figs = [(t, png) for t, png in (
        ("Segment shares across versions", share_plot(model, inputs.versions)),
        ("k selection", k_curves(model.info.get("k_selection") or []))) if png]
    figures = [("Members' medians", radar_plots(model, radar)),
               ("R x F grid", rf_heatmap(grid, prospects, model.rfm_edges)),
               *scatters, *registry_figs]
    migrations: dict[str, np.ndarray] = {}
    versions_html = _version_section(inputs, labels, migrations)
    times_html = _time_section(inputs, labels, migrations)
    churn = None if inputs.churn is None else churn_by_segment(
        inputs.churn, table.X, a.segment_ids, model.segment_ids)
    churn_html = _churn_section(model, inputs, churn)
    groups_html = matrix_html([label(model, i) for i in range(model.k)], rfm.GROUPS, seg_groups,
                              corner="segment \\ RFM group")
    src = dict(figures)

    def img(title: str, heading: str = "h2") -> str:
        return f"<{heading}>{_e(title)}</{heading}><img alt='{_e(title)}' src='{src[title]}'>"

    at = _e(at_text(table.as_of_ms))
    metrics = ", ".join(f"{k} = {_count(v)}" for k, v in model.metrics.items())
    warning = inputs.notes.get("warning")
    min_values = MIN_VALUES
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>segstream model {_e(model.version)}</title><style>{STYLE}</style></head><body>
<h1>Segment model version {_e(model.version)} (spec {_e(model.spec_version)}, k = {model.k})</h1>
<p>Trained on {_e(_count(model.info.get("rows", "?")))} users as of
{_e(at_text(model.info.get("as_of_ms")))}. {_e(metrics)}</p>
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
order value among all buyers, and at the centre when fewer than {min_values} members
bought; <i>bought</i> is the share of the members who bought.</p>
<h2>RFM</h2><p>Scores on the model's quintile edges of its training buyers
(<code>rfm_edges</code>): R 5 bought most recently, F 5 ordered most.</p>
{img("R x F grid", "h3")}
<h3>Segments x RFM groups (users; shaded by the share of the segment)</h3>
{groups_html}
<p>{"; ".join(f"<b>{_e(g)}</b>: {_e(rfm.DEFINITIONS[g])}" for g in rfm.GROUPS)}.</p>
<h2>Users in two dimensions</h2>{"".join(img(t, "h3") for t, _ in scatters)}
{churn_html}
<h2>Migration between versions</h2>{versions_html}
<h2>Migration over time</h2>{times_html}
{"<h2>Registry</h2>" if registry_figs else ""}{"".join(img(t, "h3") for t, _ in registry_figs)}
</body></html>"""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(page)
    return Report(path, len(table), table.user_ids[take], grid, prospects, profiles,
                  seg_groups, radar, migrations, tuple(t for t, _ in figures), churn)


def _churn_section(model: SegmentModel, inputs: Inputs, churn: list[dict[str, Any]] | None
                   ) -> str:
    if churn is None or inputs.churn is None:
        why = inputs.notes.get("churn", "No churn model was given.")
        return f"<h2>Churn risk</h2><p class='note'>{_e(why)}</p>"
    c = inputs.churn
    def reasons(r: dict[str, Any]) -> str:
        return "; ".join(_e(f"{x['text']} ({x['share']:.0%})") for x in r["reasons"])

    rows = "".join(
        f"<tr><td>{_e(label(model, i))}</td><td>{_count(r['users'])}</td>"
        f"<td>{_num(r['mean_risk'], '.2f')}</td><td>{_num(r['high_share'], '.0%')}</td>"
        f"<td>{reasons(r)}</td></tr>" for i, r in enumerate(churn))
    return (f"<h2>Churn risk</h2><p>Churn model version {_e(c.version or '?')}: "
            f"{_e(c.label.get('definition', ''))}. Each user scored as of the snapshot; the "
            "high band starts at a risk of "
            f"{c.band_edges[1]:.2f}. Reasons: the commonest among the members' top reasons "
            "(one member's words; the share of the members that have it).</p>"
            "<table><tr><th>segment</th><th>users</th><th>mean risk</th><th>high band</th>"
            f"<th>commonest reasons</th></tr>{rows}</table>")

