"""``segstream report``: one self-contained HTML page (PNG plots inlined as base64).

Plots: PCA scatter of users coloured by segment (UMAP too when ``umap`` is
installed), a radar chart per segment (z-scores of its distinguishing features),
parallel coordinates of the centroids, segment shares across registered versions,
and the k-selection curves when the version was trained with ``--k auto``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from segstream.adapters.registry import VersionInfo
from segstream.core.segment_model import SegmentModel
from segstream.training.data import FeatureTable


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _scatter(model: SegmentModel, Z: np.ndarray, labels: np.ndarray) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    out = []
    pca = PCA(2, random_state=0).fit(Z)
    emb = {"PCA": pca.transform(Z)}
    try:
        import umap  # type: ignore[import-not-found]

        emb["UMAP"] = umap.UMAP(random_state=0).fit_transform(Z)
    except ImportError:
        pass
    for name, xy in emb.items():
        fig, ax = plt.subplots(figsize=(7, 5.5))
        for row, (sid, persona) in enumerate(zip(model.segment_ids, model.personas,
                                                 strict=True)):
            m = labels == row
            ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.5, label=f"{sid}: {persona}")
        if name == "PCA":
            c = pca.transform(model.centroids)
            ax.scatter(c[:, 0], c[:, 1], marker="x", c="black", s=60, label="centroids")
        ax.set_title(f"{name} of {len(Z):,} users, coloured by segment")
        ax.legend(fontsize=6, markerscale=3, loc="best")
        out.append((f"{name} scatter", _png(fig)))
    return out


def _radars(model: SegmentModel) -> str:
    import matplotlib.pyplot as plt

    names = list(model.feature_names)
    z = np.array([[p["z"][n] for n in names] for p in model.profiles])
    top = np.argsort(-np.abs(z).max(0))[:8]
    angles = np.linspace(0, 2 * np.pi, len(top), endpoint=False)
    cols = min(4, model.k)
    rows = int(np.ceil(model.k / cols))
    fig = plt.figure(figsize=(3.3 * cols, 3.3 * rows))
    lim = max(1.0, float(np.abs(z[:, top]).max()))
    for i in range(model.k):
        ax = fig.add_subplot(rows, cols, i + 1, projection="polar")
        vals = np.clip(z[i, top], -lim, lim) + lim
        ax.plot(np.r_[angles, angles[:1]], np.r_[vals, vals[:1]])
        ax.fill(np.r_[angles, angles[:1]], np.r_[vals, vals[:1]], alpha=0.25)
        ax.set_xticks(angles)
        ax.set_xticklabels([names[j].replace("_", "\n") for j in top], fontsize=6)
        ax.set_yticklabels([])
        ax.set_title(f"{model.segment_ids[i]}: {model.personas[i]}", fontsize=7)
    fig.suptitle(f"z-score vs population (centre = -{lim:.1f}, rim = +{lim:.1f})",
                 fontsize=9)
    return _png(fig)


def _parallel(model: SegmentModel) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    x = np.arange(len(model.feature_names))
    for row, sid in enumerate(model.segment_ids):
        ax.plot(x, model.centroids[row], marker="o", ms=3, label=f"{sid}: {model.personas[row]}")
    ax.set_xticks(x)
    ax.set_xticklabels(model.feature_names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("scaled value (robust z)")
    ax.set_title("Centroids, parallel coordinates (scaled space)")
    ax.legend(fontsize=6)
    return _png(fig)


def _sizes(versions: list[VersionInfo]) -> str | None:
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
    for sid in ids:
        vals = np.array([s.get(sid, 0.0) for _, s in points])
        ax.bar(xs, vals, bottom=bottom, label=f"segment {sid}")
        bottom += vals
    ax.set_xlabel("model version")
    ax.set_ylabel("share of users")
    ax.set_title("Segment sizes across versions (stable ids)")
    ax.legend(fontsize=6, ncol=2)
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
    return _png(fig)


def write_report(out: Path, model: SegmentModel, versions: list[VersionInfo],
                 table: FeatureTable | None, *, seed: int = 0,
                 max_points: int = 5000) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    if table is None:  # no data given: points drawn from each segment's share and radius
        rng = np.random.default_rng(seed)
        shares = np.array([p["share"] for p in model.profiles])
        rows = rng.choice(model.k, size=2000, p=shares / shares.sum())
        Z = model.centroids[rows] + rng.normal(0, np.sqrt(model.temperature / model.centroids
                                                          .shape[1]), (2000, model.centroids
                                                                       .shape[1]))
        labels = rows
        data_note = "no feature table given: points simulated from segment shares and radius"
    else:
        rng = np.random.default_rng(seed)
        take = rng.choice(len(table), size=min(max_points, len(table)), replace=False)
        X = table.X[take]
        Z = model.preprocessor.transform(X)
        labels = model.assign(X).index
        data_note = f"{len(take):,} users sampled from {html.escape(table.source)}"
    figures = _scatter(model, Z, labels)
    figures.append(("Radar per segment", _radars(model)))
    figures.append(("Parallel coordinates", _parallel(model)))
    sizes = _sizes(versions)
    if sizes:
        figures.append(("Segment sizes across versions", sizes))
    curves = _k_curves(model.info.get("k_selection") or [])
    if curves:
        figures.append(("k selection", curves))
    seg_rows = "".join(
        f"<tr><td>{p['segment_id']}</td><td>{html.escape(name)}</td><td>{p['share']:.1%}</td>"
        f"<td>{p['size']:,}</td><td>" + ", ".join(
            f"{d['feature']} {d['direction']} (z={d['z']:+.2f})" for d in p["distinguishing"])
        + "</td></tr>" for p, name in zip(model.profiles, model.personas, strict=True))
    metrics = ", ".join(f"{k} = {v:.4g}" for k, v in model.metrics.items())
    body = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='{src}'>"
                   for t, src in figures)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>segstream model {model.version}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
</style></head><body>
<h1>Segment model version {model.version} (spec {model.spec_version}, k = {model.k})</h1>
<p>{metrics}</p><p>Plot data: {data_note}.</p>
<table><tr><th>id</th><th>persona</th><th>share</th><th>size</th><th>sets it apart</th></tr>
{seg_rows}</table>{body}</body></html>"""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(page)
    return path
