"""Session fixtures that start the real parts: a Kafka-protocol broker (tansu), a
redis-server, one local SparkSession. Each starts once per test session, on free
loopback ports, and is stopped at the end. Set SEGSTREAM_TEST_KAFKA_BOOTSTRAP /
SEGSTREAM_TEST_REDIS_URL to run the suite against services that already run.

Fixtures that tests of several directories use are here too (a redis-server the test
owns, webhook receivers); the helpers behind all fixtures are in tests/support/.

The caller's own ``SEGSTREAM_*`` settings (a user's stack exported in the shell) are
removed before any test runs: tests build their settings explicitly and must not
depend on the environment they are started from.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

for _name in [n for n in os.environ if n.startswith("SEGSTREAM_")
              and not n.startswith("SEGSTREAM_TEST_")]:
    del os.environ[_name]

from segstream.config import Settings  # noqa: E402  (after the environment is cleaned)
from segstream.sources.stack import free_port, start_broker, start_redis, stop_service  # noqa: E402
from tests.support.servers import OwnRedis, flushed_redis  # noqa: E402

if TYPE_CHECKING:
    from tests.support.webhooks import Receiver


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("SEGSTREAM_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    logdir = tmp_path_factory.mktemp("kafka")
    svc = start_broker(free_port(), logdir / "tansu.log")
    yield svc.address
    stop_service(svc)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("SEGSTREAM_TEST_REDIS_URL")
    if external:
        yield external
        return
    workdir = tmp_path_factory.mktemp("redis")
    svc = start_redis(free_port(), workdir, workdir / "redis.log")
    yield svc.address
    stop_service(svc)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A client on a freshly flushed database."""
    yield from flushed_redis(redis_url)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    """A plain redis-server owned by the test, to stop, hang and start again on the same
    port and data (started; stopped at the end)."""
    server = OwnRedis(free_port(), tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    """Webhook receivers a test starts (``receivers.append(Receiver(port))``), stopped at
    the end."""
    started: list[Receiver] = []
    yield started
    for r in started:
        r.stop()


_topic_serial = itertools.count()


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Callable[..., str]:
    """Create a uniquely named topic: ``topic_factory("events", partitions=4)``."""
    from segstream.adapters.kafka import ensure_topics

    def make(prefix: str = "t", partitions: int = 4) -> str:
        name = f"{prefix}-{os.getpid()}-{next(_topic_serial)}"
        ensure_topics(kafka_bootstrap, [name], partitions)
        return name

    return make


@pytest.fixture
def settings_factory(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str
) -> Callable[..., Settings]:
    """Settings on the test broker/redis with a private data dir; override any field."""

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "kafka_bootstrap": kafka_bootstrap,
            "redis_url": redis_url,
        }
        base.update(overrides)
        return Settings(**base)

    return make


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local SparkSession for the whole test session (start-up costs ~10 s)."""
    import sys

    from pyspark.sql import SparkSession

    # Python workers (UDFs, the Kafka data source) must run the venv's interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.ui.showConsoleProgress", "false")
        .appName("segstream-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    yield session
    session.stop()
