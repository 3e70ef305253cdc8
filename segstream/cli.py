"""The ``segstream`` command. Each package adds its own commands (``register(app)``).

Heavy imports (Spark, MLflow, FastAPI) happen inside the commands, so ``--help``
answers instantly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from segstream.config import Settings

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

console = Console()
err = Console(stderr=True)


def load_settings() -> Settings:
    """Build the process's one settings object, turning errors into a readable exit."""
    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError, missing config file
        err.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python logs every reconnect attempt at ERROR (screens of ECONNREFUSED once a
    # broker stops); our own code raises KafkaUnavailable with what to do instead
    debug = settings.log_level == "DEBUG"
    logging.getLogger("kafka").setLevel(logging.DEBUG if debug else logging.CRITICAL)
    for noisy in ("py4j", "urllib3", "mlflow", "alembic", "httpx"):  # chatty at INFO
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    return settings


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


# --------------------------------------------------------------------------- stack
@stack_app.command("up")
def stack_up() -> None:
    """Start the broker and redis-server (unless running or configured), create topics."""
    from segstream.kafka import KafkaUnavailable
    from segstream.stack import StackError, endpoints, up

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
    from segstream.stack import down

    for line in down(load_settings()):
        console.print(f"  {line}")


@stack_app.command("status")
def stack_status() -> None:
    """Show each service, whether the stack manages it, and whether it answers."""
    from segstream.stack import status

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
    from segstream.demo import topic_counts

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
    from segstream.demo import run_demo
    from segstream.kafka import KafkaUnavailable
    from segstream.stack import StackError

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


def _register_packages() -> None:
    from segstream import sources_cli

    sources_cli.register(app)
    for module in ("streaming.cli", "training.cli", "serving.cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


_register_packages()


def main() -> None:  # pragma: no cover - entry point
    app(prog_name="segstream")


if __name__ == "__main__":  # pragma: no cover
    main()
