"""The one ``--metrics-port`` server of every command that has one (the API serves
``/metrics`` itself)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server


class MetricsPortUnavailable(RuntimeError):
    """``--metrics-port`` cannot be served (taken, not permitted, no such address)."""


def serve_metrics(port: int, host: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``registry`` on http://host:port/metrics from a daemon thread (0: off).

    Raises :class:`MetricsPortUnavailable` naming the option, the address and the
    cause, for the command to print and exit 1 with (``segstream.app.console.fail``): call it
    before connecting to anything, so a taken port fails fast and plainly.
    """
    if not port:
        return
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsPortUnavailable(
            f"--metrics-port {port}: cannot listen on {host}:{port}: {exc}") from exc
