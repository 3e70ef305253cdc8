"""Fault-test fixtures: an MLflow tracking server the test owns (started; stopped at
the end). Its class, and the test-owned redis-server of ``redis_server``
(tests/conftest.py), are in tests/support/servers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import MlflowServer


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path / "mlflow-server")
    server.start()
    yield server
    server.stop()
