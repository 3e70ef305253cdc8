"""``segstream serve`` and the segment-change / webhook workers."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer

webhooks_app = typer.Typer(help="Segment-change detection and webhook delivery.",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(webhooks_app, name="webhooks")


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: api_host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api_port).")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn workers (default: "
                                                "api_workers).")] = None,
) -> None:
    """Run the HTTP API (segment lookups, personalization, /metrics, /docs)."""
    from segstream.cli import console, load_settings

    settings = load_settings()
    host = host or settings.api_host
    port = port or settings.api_port
    workers = workers or settings.api_workers
    if not settings.api_auth_enabled:
        console.print("[yellow]API key auth is DISABLED[/yellow] "
                      "(SEGSTREAM_API_AUTH_ENABLED=false): every /v1 call is accepted")
    elif not settings.api_keys:
        console.print("[yellow]no API keys configured[/yellow]: every /v1 call will be 401; "
                      "set SEGSTREAM_API_KEYS='[\"...\"]'")
    if workers > 1:
        # multiprocess metrics: the directory must be set before prometheus_client loads
        mp_dir = settings.data_dir / "prometheus-multiproc"
        shutil.rmtree(mp_dir, ignore_errors=True)
        mp_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir.resolve())
    import uvicorn

    console.print(f"serving on http://{host}:{port} (docs: /docs, metrics: /metrics), "
                  f"{workers} worker(s)")
    uvicorn.run("serving.app:create_app_from_env", factory=True, host=host, port=port,
                workers=workers, loop="uvloop", http="httptools", access_log=False,
                log_level=settings.log_level.lower())
