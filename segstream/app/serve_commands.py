"""``segstream serve`` and the segment-change / webhook workers."""

from __future__ import annotations

import os
import shutil
from typing import Annotated, Any

import typer

from segstream.app.console import serve_metrics_or_fail

APP_FACTORY = "segstream.serving.app:create_app_from_env"
webhooks_app = typer.Typer(help="Segment-change detection and webhook delivery.",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(webhooks_app, name="webhooks")


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: api_host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api_port).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: "
                                                "api_workers).")] = None,
    server: Annotated[str | None, typer.Option(
        help="ASGI server: granian or uvicorn (default: api_server).")] = None,
) -> None:
    """Run the HTTP API (segment lookups, personalization, /metrics, /docs)."""
    from segstream.app.console import console, load_settings

    settings = load_settings()
    host = host or settings.api_host
    port = port or settings.api_port
    workers = workers or settings.api_workers
    server = server or settings.api_server
    if server not in ("granian", "uvicorn"):
        console.print(f"[red]--server {server}[/red]: use granian or uvicorn")
        raise typer.Exit(2)
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
    from segstream.serving.model_source import use_poll_env_defaults

    use_poll_env_defaults()  # before the server: its worker processes inherit the environment
    console.print(f"serving on http://{host}:{port} (docs: /docs, metrics: /metrics), "
                  f"{workers} {server} worker(s)")
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces, Loops
        from granian.log import LogLevels

        Granian(APP_FACTORY, address=host, port=port, interface=Interfaces.ASGI,
                workers=workers, loop=Loops.uvloop, log_access=False, factory=True,
                log_level=LogLevels(settings.log_level.lower())).serve()
        return
    import uvicorn

    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http="httptools", access_log=False,
                log_level=settings.log_level.lower())


def _workers_setup() -> tuple[object, object, str]:
    from segstream.adapters.endpoints import endpoints
    from segstream.adapters.redis_connect import sync_redis
    from segstream.app.console import load_settings

    settings = load_settings()
    ep = endpoints(settings)
    return settings, sync_redis(ep.redis_url, cluster=settings.redis_cluster), ep.kafka_bootstrap


MetricsPort = Annotated[int, typer.Option(
    "--metrics-port", help="Serve this worker's Prometheus metrics on this port (0: off).")]


def _stop_on_sigterm() -> Any:
    """A stop event set by SIGTERM, so a worker finishes its batch and commits."""
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


@webhooks_app.command("detect")
def detect(
    available_now: Annotated[bool, typer.Option(
        "--available-now", help="Process the `features` topic up to its current end (and "
        "any re-scoring sweep due by then), then exit.")] = False,
    metrics_port: MetricsPort = 0,
) -> None:
    """Publish segment changes to `segment-changes`: on each `features` update, and for
    every stored user each `rescore_interval_s` of the clock (users whom time alone
    moves). Hysteresis: `segment_min_dwell_s`."""
    from segstream.app.console import console
    from segstream.config import Settings
    from segstream.serving.changes import ChangeDetector
    from segstream.serving.churn import ChurnHolder, RegistryChurnSource
    from segstream.serving.model_holder import ModelHolder
    from segstream.serving.model_source import RegistrySource, use_poll_env_defaults

    use_poll_env_defaults()
    settings, client, bootstrap = _workers_setup()
    assert isinstance(settings, Settings)
    serve_metrics_or_fail(metrics_port, settings.metrics_host)
    holder = ModelHolder(RegistrySource(settings), settings.feature_params())
    churn = ChurnHolder(RegistryChurnSource(settings), settings.feature_params())
    detector = ChangeDetector(settings, holder, client, bootstrap, churn)
    try:
        if available_now:
            n = detector.run_available_now()
            console.print(f"published {n} segment changes (clock={settings.clock})")
        else:
            detector.run(_stop_on_sigterm(), settings.api_model_poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        detector.close()


@webhooks_app.command("run")
def run(metrics_port: MetricsPort = 0) -> None:
    """Deliver `segment-changes` to webhook_urls (signed, retried, dead-lettered)."""
    from segstream.adapters.topic_reader import RedisOffsetReader
    from segstream.config import Settings
    from segstream.serving.webhooks import Dispatcher

    settings, client, bootstrap = _workers_setup()
    assert isinstance(settings, Settings)
    serve_metrics_or_fail(metrics_port, settings.metrics_host)
    dispatcher = Dispatcher(settings, client)
    reader = RedisOffsetReader(bootstrap, settings.topic_segment_changes, client, "webhooks")
    try:
        dispatcher.run(reader, _stop_on_sigterm())
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
        dispatcher.close()


@webhooks_app.command("redrive")
def redrive() -> None:
    """Send the dead-lettered deliveries again."""
    from segstream.app.console import console
    from segstream.config import Settings
    from segstream.serving.webhooks import Dispatcher

    settings, client, _ = _workers_setup()
    assert isinstance(settings, Settings)
    delivered, failed = Dispatcher(settings, client).redrive()
    console.print(f"redelivered {delivered}, dead-lettered again {failed}")
