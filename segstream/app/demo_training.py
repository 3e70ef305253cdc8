"""The demo's drift step: when does the champion stop fitting the stream?

Snapshots of every user from the Parquet history, as of given times after the
champion's training, each checked as ``segstream update`` checks its window
(``segstream.training.update.drift_of``: the largest feature PSI against the model's baseline and
the mean distance to the centroids against training's). The first snapshot past a
threshold is when the drift is detected.

A history row is a user's record at the end of a micro-batch, so a snapshot as of T is
exact when every event up to T had been streamed, and none after, by the end of some
batch: the demo streams each day before it sends the next. The times are whole days
after training, at the training time's hour: "as of" features such as recency follow
the hour of the day (activity is diurnal), so other hours would show a daily swing.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from segstream.config import Settings
from segstream.core.contract import DAY_MS
from segstream.core.segment_model import SegmentModel
from segstream.training.data import read_table
from segstream.training.update import DriftState, drift_of


@dataclass(frozen=True)
class DriftPoint:
    as_of_ms: int
    users: int
    state: DriftState
    triggered: bool


def drift_over_time(settings: Settings, model: SegmentModel, times: list[int]
                    ) -> list[DriftPoint]:
    """``drift_of`` on a history snapshot as of each of ``times``."""
    params = settings.feature_params()
    points = []
    for t in times:
        table = read_table(settings.history_dir, params, t)
        state = drift_of(model, table.X)
        points.append(DriftPoint(t, len(table), state, state.triggered(settings)))
    return points


def detected(points: list[DriftPoint]) -> DriftPoint | None:
    return next((p for p in points if p.triggered), None)


def drift_table(points: list[DriftPoint], settings: Settings, day0_ms: int) -> Table:
    table = Table("as of (day)", "users", "largest feature PSI", "distance ratio", "drift?",
                  title=f"drift of the champion's segments, as `segstream update` checks it "
                        f"(PSI > {settings.drift_psi_threshold} or distance ratio > "
                        f"{settings.drift_distance_ratio})")
    for p in points:
        table.add_row(f"{(p.as_of_ms - day0_ms) / DAY_MS:.1f}", f"{p.users:,}",
                      f"{p.state.psi_feature} {p.state.psi_max:.2f}",
                      f"{p.state.distance_ratio:.2f}", "[bold red]yes[/]" if p.triggered else "no")
    return table


def step_drift(settings: Settings, console: Console, model: SegmentModel, *, day0_ms: int,
               times: list[int], injected_ms: int | None) -> str:
    """Print the drift scan at ``times``; return the summary line."""
    console.rule("drift: the champion against history snapshots, a day apart")
    with console.status("checking drift on history snapshots..."):
        points = drift_over_time(settings, model, times)
    console.print(drift_table(points, settings, day0_ms))
    first = detected(points)
    injected = ("" if injected_ms is None else
                f"; injected at day {(injected_ms - day0_ms) / DAY_MS:.1f}")
    if first is None:
        last = times[-1] if times else day0_ms
        return f"not detected by day {(last - day0_ms) / DAY_MS:.1f}{injected}"
    s = first.state
    metric = (f"PSI of {s.psi_feature} {s.psi_max:.2f} > {settings.drift_psi_threshold}"
              if s.psi_max > settings.drift_psi_threshold else
              f"distance ratio {s.distance_ratio:.2f} > {settings.drift_distance_ratio}")
    return f"day {(first.as_of_ms - day0_ms) / DAY_MS:.1f}: {metric}{injected}"
