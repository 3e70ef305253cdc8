"""``segstream churn train | evaluate``: the churn-risk model (registered by
``segstream.app.cli``; docs/training.md, "Churn risk")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from segstream.app.console import as_of_option, console, fail, load_settings
from segstream.core.times import format_time

FROM_HELP = ("The Parquet history (directory or one of its files); default: the stream's "
             "history under the data directory. Labels need the events after each "
             "snapshot time, which only the history keeps.")


def register(app: typer.Typer) -> None:
    churn_app = typer.Typer(help="Churn risk: a calibrated second-stage model trained on "
                            "point-in-time snapshots of the history.", no_args_is_help=True)
    app.add_typer(churn_app, name="churn")
    churn_app.command("train")(train)
    churn_app.command("evaluate")(evaluate)


def _source(settings: Any, source: Path | None) -> Path:
    path = source or settings.history_dir
    if not path.exists():
        raise fail(f"{path} does not exist; run `segstream stream` to write the Parquet "
                   "history, or pass --from HISTORY")
    return Path(path)


def _day(ms: int) -> str:
    return format_time(ms, "seconds")


def evaluation_tables(ev: Any, title: str) -> list[Table]:
    """The model beside the baselines, the calibration table and the bands."""
    m = ev.metrics
    scores = Table("score", "ROC AUC", "PR AUC", "Brier", title=title)
    scores.add_row("[bold]churn model[/bold]", f"{m['roc_auc']:.4f}", f"{m['pr_auc']:.4f}",
                   f"{m['brier']:.4f}")
    for name, b in ev.baselines.items():
        scores.add_row(name.replace("_", " "), f"{b['roc_auc']:.4f}" if "roc_auc" in b else "-",
                       f"{b['pr_auc']:.4f}" if "pr_auc" in b else "-",
                       f"{b['brier']:.4f}" if "brier" in b else "-")
    cal = Table("predicted risk", "rows", "mean predicted", "observed churn",
                title="calibration (test rows)")
    for r in ev.calibration:
        cal.add_row(f"{r['from']:.1f}-{r['to']:.1f}", f"{r['rows']:,}", f"{r['predicted']:.3f}",
                    f"{r['observed']:.3f}")
    bands = Table("band", "risk", "share", "observed churn", title="bands (test rows)")
    for b in ev.bands:
        bands.add_row(b["band"], f"{b['from']:.2f}-{b['to']:.2f}", f"{b['share']:.1%}",
                      "-" if b["observed"] is None else f"{b['observed']:.3f}")
    return [scores, cal, bands]


def train(
    source: Annotated[Path | None, typer.Option("--from", help=FROM_HELP)] = None,
    promote: Annotated[bool, typer.Option(help="Make it the churn champion if it passes "
                                          "the gates.")] = True,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Use the history as if it ended then (ISO-8601 or epoch); default: "
        "its stream time.")] = None,
) -> None:
    """Fit the churn model on snapshots of every user as of earlier times, measure it on
    the later ones beside recency alone, the RFM score and the champion; register it and
    promote it through the gates."""
    from segstream.adapters.registry import RegistryError
    from segstream.training.churn import train_churn

    settings = load_settings()
    path = _source(settings, source)
    end_ms = as_of_option(as_of)
    try:
        with console.status(f"churn model on {path}..."):
            result = train_churn(settings, path, promote=promote, end_ms=end_ms)
    except (ValueError, FileNotFoundError, RegistryError) as exc:
        raise fail(str(exc)) from exc
    tr, te, model = result.train, result.test, result.model
    console.print(f"label: {model.label['definition']} ({settings.churn_label})")
    console.print(f"train: {len(tr):,} rows, {len(tr.times)} snapshots "
                  f"{_day(tr.times[0])} .. {_day(tr.times[-1])}, churn rate {tr.churn_rate:.3f}")
    console.print(f"test:  {len(te):,} rows, {len(te.times)} snapshot(s) "
                  f"{_day(te.times[0])} .. {_day(te.times[-1])}, churn rate {te.churn_rate:.3f}")
    for table in evaluation_tables(result.evaluation, f"version {result.version}, test period"):
        console.print(table)
    if result.segments:
        seg = Table("segment", "persona", "rows", "mean risk", "observed churn",
                    title=f"per segment (segment model {result.segment_model})")
        for r in result.segments:
            seg.add_row(str(r["segment_id"]), r["persona"], f"{r['rows']:,}",
                        f"{r['mean_risk']:.3f}", f"{r['observed']:.3f}")
        console.print(seg)
    if result.champion_note:
        console.print(result.champion_note)
    console.print(f"gates: {result.gate.summary()}; "
                  + ("[green]churn champion[/green]" if result.promoted else "not promoted"))
    if not result.gate.passed:
        raise typer.Exit(3)


def evaluate(
    source: Annotated[Path | None, typer.Option("--from", help=FROM_HELP)] = None,
    version: Annotated[str, typer.Option(help="Churn model version or alias.")] = "champion",
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Snapshot time T to evaluate at (its label window must be in the "
        "history); default: the newest such time.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the tables as Markdown.")
                   ] = None,
) -> None:
    """Score a registered churn model on one labelled snapshot of the history, beside
    recency alone and the RFM score: ROC AUC, PR AUC, Brier, calibration, bands."""
    from segstream.adapters.registry import RegistryError
    from segstream.core.contract import FeatureSpecMismatch
    from segstream.training.churn import evaluate_churn

    settings = load_settings()
    path = _source(settings, source)
    as_of_ms = as_of_option(as_of)
    try:
        model, rows, ev = evaluate_churn(settings, path, version, as_of_ms)
    except (ValueError, FileNotFoundError, RegistryError, FeatureSpecMismatch) as exc:
        raise fail(str(exc)) from exc
    title = (f"churn version {model.version} on {len(rows):,} users as of "
             f"{_day(rows.times[0])} (churn rate {rows.churn_rate:.3f})")
    console.print(f"label: {model.label['definition']}")
    tables = evaluation_tables(ev, title)
    for table in tables:
        console.print(table)
    if out is not None:
        out.write_text(f"# Churn evaluation\n\n{title}; label: {model.label['definition']}\n\n"
                       + "\n".join(markdown(t) for t in tables))
        console.print(f"wrote {out}")


def markdown(table: Table) -> str:
    """A rich table as a Markdown table (title as a heading)."""
    cols = [c.header for c in table.columns]
    cells = [list(c.cells) for c in table.columns]
    lines = [f"## {table.title}", "", "| " + " | ".join(map(str, cols)) + " |",
             "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(col[i]).replace("[bold]", "").replace("[/bold]", "")
                                for col in cells) + " |" for i in range(table.row_count)]
    return "\n".join(lines) + "\n"
