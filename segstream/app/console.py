"""What every command shares: the consoles, the settings loader, the failure exit."""

from __future__ import annotations

import logging
from typing import Any

import typer
from rich.console import Console

from segstream.config import Settings

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


def as_of_option(text: str | None, option: str = "--as-of") -> int | None:
    """An ``--as-of`` value as epoch ms (the forms of ``segstream.core.times``, as the
    API's ``?as_of=``); exit 2 naming the option otherwise."""
    if text is None:
        return None
    from segstream.core.times import TimestampError, parse_as_of

    try:
        return parse_as_of(text)
    except TimestampError as exc:
        raise fail(f"{option}: {exc}", 2) from exc


def serve_metrics_or_fail(port: int, host: str, registry: Any = None) -> None:
    """Serve ``--metrics-port`` (0: off) before connecting to anything, so a port the
    command cannot listen on fails fast: exit 1 naming it, not a traceback."""
    from prometheus_client import REGISTRY

    from segstream.adapters.metrics_server import MetricsPortUnavailable, serve_metrics

    try:
        serve_metrics(port, host, REGISTRY if registry is None else registry)
    except MetricsPortUnavailable as exc:
        raise fail(str(exc)) from exc
