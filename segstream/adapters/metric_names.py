"""The sample names a set of prometheus_client metrics exports (``serving/metrics.py``,
``streaming/metrics.py``): what the dashboard and alert-rule tests compare their
queries against."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics import MetricWrapperBase

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
