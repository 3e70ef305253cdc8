"""The ``segstream`` command: the stack and config commands here, the others from each
``*_commands`` module (``register(app)``).

Heavy imports (Spark, MLflow, FastAPI) happen inside the commands, so ``--help``
answers instantly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from segstream.app import (
    churn_commands,
    serve_commands,
    source_commands,
    stream_commands,
    train_commands,
)
from segstream.app.console import console, fail, load_settings

app = typer.Typer(
    name="segstream",
    help="Real-time behavioural segmentation: Kafka events -> Spark features -> "
    "MiniBatch K-Means segments -> FastAPI.\n\n"
    "Start with `segstream stack up` (a local Kafka-protocol broker and Redis), then "
    "`segstream generate --topic events` to stream synthetic behaviour into it. "
    "Settings come from SEGSTREAM_* environment variables; see `segstream config show`.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
stack_app = typer.Typer(help="Start, stop and inspect the local stack (broker + Redis).",
                        no_args_is_help=True)
config_app = typer.Typer(help="Show the settings in effect, or regenerate their docs.",
                         no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(config_app, name="config")

# --------------------------------------------------------------------------- stack
@stack_app.command("up")
def stack_up() -> None:
    """Start the broker and redis-server (unless running or configured), create topics."""
    from segstream.adapters.endpoints import StackError, endpoints
    from segstream.adapters.kafka import KafkaUnavailable
    from segstream.sources.stack import up

    settings = load_settings()
    try:
        _, done = up(settings)
    except (StackError, KafkaUnavailable) as exc:
        raise fail(str(exc)) from exc
    for line in done:
        console.print(f"  {line}")
    ep = endpoints(settings)
    console.print("\nConnection settings (export them to point other tools here):")
    console.print(f"  export SEGSTREAM_KAFKA_BOOTSTRAP={ep.kafka_bootstrap}")
    console.print(f"  export SEGSTREAM_REDIS_URL={ep.redis_url}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started. Services it did not start are left alone."""
    from segstream.sources.stack import down

    for line in down(load_settings()):
        console.print(f"  {line}")


@stack_app.command("status")
def stack_status() -> None:
    """Show each service, whether the stack manages it, and whether it answers."""
    from segstream.sources.stack import status

    table = Table("service", "address", "managed", "pid", "answers")
    all_up = True
    for name, (svc, alive) in status(load_settings()).items():
        all_up &= alive
        table.add_row(name, svc.address if svc else "-", str(svc.managed) if svc else "-",
                      str(svc.pid or "-") if svc else "-",
                      "[green]yes[/green]" if alive else "[red]no[/red]")
    console.print(table)
    if not all_up:
        raise typer.Exit(1)
    from segstream.app.demo import topic_counts

    counts = Table("topic", "records")
    for name, n in topic_counts(load_settings()).items():
        counts.add_row(name, f"{n:,}")
    console.print(counts)


@app.command("demo")
def demo(
    keep_running: Annotated[bool, typer.Option(
        "--keep-running", help="Leave the stack and the API up at the end (Ctrl-C always "
        "stops what the demo started).")] = False,
) -> None:
    """Run the pipeline end to end on the embedded defaults (what `make demo` runs):
    30 days of synthetic events up to now, streamed, trained on, re-scored as time
    passes, served; ends with a summary."""
    from segstream.adapters.endpoints import StackError
    from segstream.adapters.kafka import KafkaUnavailable
    from segstream.app.demo import run_demo

    try:
        run_demo(load_settings(), console, keep_running=keep_running)
    except (StackError, KafkaUnavailable) as exc:
        raise fail(str(exc)) from exc


# -------------------------------------------------------------------------- config
@config_app.command("show")
def config_show() -> None:
    """Print every setting in effect (secrets masked)."""
    settings = load_settings()
    table = Table("setting", "value")
    for name, value in settings.model_dump().items():
        table.add_row(f"SEGSTREAM_{name.upper()}", str(value))
    console.print(table)


@config_app.command("docs")
def config_docs(
    out: Annotated[Path, typer.Option(help="Where to write the page.")] = Path(
        "docs/configuration.md"),
) -> None:
    """Regenerate docs/configuration.md from the settings class."""
    from segstream.config import render_configuration_doc

    out.write_text(render_configuration_doc())
    console.print(f"wrote {out}")


for commands in (source_commands, stream_commands, train_commands, churn_commands,
                 serve_commands):
    commands.register(app)


def main() -> None:  # pragma: no cover - entry point
    app(prog_name="segstream")


if __name__ == "__main__":  # pragma: no cover
    main()
