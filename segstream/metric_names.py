"""What the metrics modules share (serving/metrics.py, streaming/metrics.py): the sample
names a set of prometheus_client metrics can export (what the dashboard and alert-rule
tests compare queries against), and :func:`serve_metrics`, the one ``--metrics-port``
server of every command that has one."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.metrics import MetricWrapperBase


class MetricsPortUnavailable(RuntimeError):
    """``--metrics-port`` cannot be served (taken, not permitted, no such address)."""


def serve_metrics(port: int, host: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``registry`` on http://host:port/metrics from a daemon thread (0: off).

    Raises :class:`MetricsPortUnavailable` naming the option, the address and the
    cause, for the command to print and exit 1 with (``segstream.cli.fail``): call it
    before connecting to anything, so a taken port fails fast and plainly.
    """
    if not port:
        return
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsPortUnavailable(
            f"--metrics-port {port}: cannot listen on {host}:{port}: {exc}") from exc

SUFFIXES = {"counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created")}


def sample_names(metrics: Iterable[MetricWrapperBase]) -> set[str]:
    """Every sample name of ``metrics``: counters as ``_total``/``_created``, histograms
    as ``_bucket``/``_sum``/``_count``/``_created``, gauges as their name."""
    names: set[str] = set()
    for metric in metrics:
        for family in metric.describe():
            suffixes = SUFFIXES.get(family.type)
            names.update({family.name + s for s in suffixes} if suffixes else {family.name})
    return names
