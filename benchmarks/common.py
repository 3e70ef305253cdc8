"""Shared helpers for benchmarks: a broker to measure against, machine description."""

from __future__ import annotations

import logging
import os
import platform
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# kafka-python logs every reconnect at ERROR once a benchmark's broker stops; the
# benchmarks report their own failures
logging.getLogger("kafka").setLevel(logging.CRITICAL)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} vCPU ({cpu}), {mem_gib:.0f} GiB, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


@contextmanager
def kafka_broker() -> Iterator[str]:
    """SEGSTREAM_KAFKA_BOOTSTRAP if set, else a fresh embedded broker on a free port."""
    external = os.environ.get("SEGSTREAM_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    from segstream.sources.stack import free_port, start_broker, stop_service

    with tempfile.TemporaryDirectory() as tmp:
        svc = start_broker(free_port(), Path(tmp) / "tansu.log")
        try:
            yield svc.address
        finally:
            stop_service(svc)
