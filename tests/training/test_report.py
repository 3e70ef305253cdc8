"""`segstream report` on real users: a generated log of 300 users written as a Parquet
history (tests/support/real_logs.py), two versions fitted a week apart, the page checked
in its HTML, its PNGs and a headless Chromium screenshot."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segstream.adapters.registry import GateResult
from segstream.app.cli import app
from segstream.config import Settings
from segstream.core.segment_model import SegmentModel
from segstream.training.data import FeatureTable, read_table
from segstream.training.fit import fit_model
from segstream.training.report import Inputs, Report, write_report
from tests.support.churn_models import make_churn_model
from tests.support.models import model_registry
from tests.support.real_logs import PARAMS, RealLog, real_log, write_history

USERS, EVENTS, DAY = 300, 30_000, 86_400_000
SAMPLE = 200  # fewer than the users, so the PCA draws a sample
TAB_ORANGE = (255, 127, 14)  # the second segment's colour: only the plots have it


def write_daily_history(directory: Path, log: RealLog) -> None:
    start = int(log.valid["ts"].min())
    write_history(directory, log.valid, list(range(start + DAY, log.end_ms, DAY)))


@pytest.fixture(scope="module")
def log() -> RealLog:
    return real_log(USERS, EVENTS, seed=3)


@pytest.fixture(scope="module")
def history(log: RealLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("history")
    write_daily_history(directory, log)
    return directory


@pytest.fixture(scope="module")
def snapshots(history: Path) -> tuple[FeatureTable, FeatureTable]:
    """Every user as of a week before the history's end, and as of its end."""
    now = read_table(history, PARAMS)
    assert now.as_of_ms is not None
    return read_table(history, PARAMS, now.as_of_ms - 7 * DAY), now


@pytest.fixture(scope="module")
def versions(snapshots: tuple[FeatureTable, FeatureTable]) -> tuple[SegmentModel, SegmentModel]:
    week_ago, now = snapshots
    v1 = fit_model(week_ago, 5, seed=1)
    v2 = fit_model(now, 5, seed=1, parent=v1, next_id=max(v1.segment_ids) + 1)
    v1.version, v2.version = "1", "2"
    return v1, v2


@pytest.fixture(scope="module")
def report(snapshots: tuple[FeatureTable, FeatureTable],
           versions: tuple[SegmentModel, SegmentModel],
           tmp_path_factory: pytest.TempPathFactory) -> Report:
    week_ago, now = snapshots
    v1, v2 = versions
    return write_report(tmp_path_factory.mktemp("report"),
                        Inputs(v2, now, previous=v1, earlier=week_ago), max_points=SAMPLE)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.images: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")


def page(report: Report) -> _Page:
    parsed = _Page()
    parsed.feed(report.path.read_text())
    return parsed


def text_of(report: Report) -> str:
    return " ".join(" ".join(page(report).text).split())


def test_every_figure_counts_the_snapshot_users(
        report: Report, snapshots: tuple[FeatureTable, FeatureTable],
        versions: tuple[SegmentModel, SegmentModel]) -> None:
    week_ago, now = snapshots
    v1, v2 = versions
    rows = v2.assign(now.X).index
    sizes = np.bincount(rows, minlength=v2.k)
    assert report.users == len(now) == int(report.rf_grid.sum()) + report.prospects
    assert report.segment_groups.sum(1).tolist() == sizes.tolist()
    # the R x F grid: R 5 on top, F 1 on the left, on the champion's own edges
    grid = Counter((r, f) for r, f, _, _ in v2.rfm(now.X) if r is not None)
    assert report.rf_grid.tolist() == [[grid[(r, f)] for f in range(1, 6)]
                                       for r in range(5, 0, -1)]
    assert 0 < report.prospects < len(now)
    # the same users by both versions: rows v1, columns v2
    by_version = report.migrations["versions"]
    assert by_version.sum(1).tolist() == np.bincount(v1.assign(now.X).index,
                                                     minlength=v1.k).tolist()
    assert by_version.sum(0).tolist() == sizes.tolist()
    # a week apart by v2: the last row holds the users not seen a week before
    over_time = report.migrations["times"]
    assert over_time.sum(0).tolist() == sizes.tolist()
    assert over_time[:-1].sum(1).tolist() == np.bincount(v2.assign(week_ago.X).index,
                                                         minlength=v2.k).tolist()
    assert over_time[-1].sum() == len(now) - len(week_ago) > 0


def test_the_churn_section_is_each_segments_members_scored_as_of_the_snapshot(
        snapshots: tuple[FeatureTable, FeatureTable],
        versions: tuple[SegmentModel, SegmentModel],
        tmp_path: Path) -> None:
    _, now = snapshots
    _, v2 = versions
    churn = make_churn_model()
    churn.version = "4"
    with_churn = write_report(tmp_path / "churn", Inputs(v2, now, churn=churn),
                              max_points=SAMPLE)
    assert with_churn.churn is not None
    rows = v2.assign(now.X).index
    scores = churn.score(now.X)
    for i, seg in enumerate(with_churn.churn):
        members = rows == i
        assert seg["segment_id"] == v2.segment_ids[i]
        assert seg["users"] == int(members.sum())
        assert seg["mean_risk"] == pytest.approx(float(scores.risk[members].mean()))
        assert seg["high_share"] == pytest.approx(float((scores.risk[members] >= 0.6).mean()))
        for reason in seg["reasons"]:  # in words, with the share of members that have it
            have = sum(reason["feature"] in {churn.feature_names[j] for j in
                                             scores.reason_cols[k].tolist() if j >= 0}
                       for k in np.flatnonzero(members))
            assert reason["share"] == pytest.approx(have / members.sum())
    text = text_of(with_churn)
    assert "Churn model version 4" in text
    assert any(r["reasons"] for r in with_churn.churn)
    first = next(r["reasons"][0] for r in with_churn.churn if r["reasons"])
    assert first["text"] in text


def test_without_a_churn_model_the_page_says_so(report: Report) -> None:
    assert report.churn is None
    assert "No churn model was given." in text_of(report)


def test_on_its_training_snapshot_the_member_table_is_the_models_profiles(
        report: Report, versions: tuple[SegmentModel, SegmentModel]) -> None:
    _, v2 = versions
    assert [p["kpis"] for p in report.profiles] == [p["kpis"] for p in v2.profiles]
    assert [p["rfm_groups"] for p in report.profiles] == [p["rfm_groups"] for p in v2.profiles]
    assert report.radar.shape == (v2.k, 12) and ((report.radar >= 0) & (report.radar <= 1)).all()
    text = text_of(report)
    for p in report.profiles:
        k = p["kpis"]
        if k["median_spend"] is not None:
            assert f"{k['median_spend']:,.2f}" in text


def test_the_pca_draws_the_sampled_real_users_and_says_how_many(
        report: Report, snapshots: tuple[FeatureTable, FeatureTable]) -> None:
    _, now = snapshots
    assert len(report.plotted) == len(set(report.plotted)) == SAMPLE
    assert set(report.plotted) <= set(now.user_ids)
    text = text_of(report)
    assert f"PCA of {SAMPLE} of {len(now)} users" in text
    for word in ("simulated", "around the centroids", "synthetic"):
        assert word not in report.path.read_text().lower()


def test_the_images_are_non_blank_pngs(report: Report) -> None:
    images = page(report).images
    assert len(images) >= 3 and len(images) == len(report.figures)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        assert png.format == "PNG" and png.width > 300 and png.height > 200
        colours = png.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 50  # drawn, not one flat colour


def test_the_persona_names_are_in_the_page(report: Report,
                                           versions: tuple[SegmentModel, SegmentModel]) -> None:
    v1, v2 = versions
    text = text_of(report)
    for model in (v1, v2):
        for sid, name in zip(model.segment_ids, model.personas, strict=True):
            assert f"{sid}: {name}" in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def test_headless_chromium_shows_the_plots(report: Report, tmp_path: Path) -> None:
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium not found (Debian package `chromium`; scripts/setup.sh "
                    "installs it)")
    shot = tmp_path / "report.png"
    subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1400,3000", report.path.as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 3000)
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    assert (pixels.min(1) < 200).mean() > 0.05  # not a blank page
    # the plots rendered: the second segment's colour is only in the PNGs
    near = (np.abs(pixels - np.array(TAB_ORANGE)).max(1) < 40).sum()
    assert near > 200, near


def test_the_command_refuses_without_a_history_and_says_what_to_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSTREAM_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "report")])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "no Parquet history" in said and "segstream stream" in said and "--from" in said
    assert not (tmp_path / "report").exists()


@pytest.mark.mlflow
def test_the_command_reports_the_champion_on_the_history(
        log: RealLog, snapshots: tuple[FeatureTable, FeatureTable],
        versions: tuple[SegmentModel, SegmentModel], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    write_daily_history(settings.history_dir, log)
    registry = model_registry(settings)
    for model in versions:
        registry.register(model, gate=GateResult(True))
    registry.promote("2")
    monkeypatch.setenv("SEGSTREAM_DATA_DIR", str(settings.data_dir))
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--points", "100"])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text()
    said = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "Segment model version 2" in said and f"PCA of 100 of {len(snapshots[1])} users" in said
    assert "assigned by version 1 (rows) and version 2 (columns)" in said  # the one before
    assert "No migration over time" not in said and "are new since" in said
    assert str(settings.history_dir) in said
