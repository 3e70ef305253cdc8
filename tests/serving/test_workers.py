"""`segstream serve --workers 2`: metrics are aggregated across worker processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from segstream.config import Settings
from segstream.sources.stack import free_port
from tests.support.archetypes import put_users
from tests.support.models import make_model

pytestmark = [pytest.mark.redis, pytest.mark.mlflow, pytest.mark.slow]

ROUTE_200 = re.compile(
    r'^segstream_http_requests_total\{[^}]*route="/v1/users/\{user_id\}/segment"'
    r'[^}]*status="200"[^}]*\} ([0-9.e+]+)$', re.M)


def test_two_workers_report_every_request_in_every_scrape(
    settings_factory: Callable[..., Settings], redis_client: Any,
) -> None:
    from segstream.adapters.registry import Registry

    settings = settings_factory()
    registry = Registry(settings)
    registry.set_alias(registry.register(make_model()), "champion")
    put_users(redis_client, {f"user-{row}": row for row in range(3)})
    port = free_port()
    env = {**os.environ, "SEGSTREAM_DATA_DIR": str(settings.data_dir),
           "SEGSTREAM_REDIS_URL": settings.redis_url or "", "SEGSTREAM_API_KEYS": '["k-123"]'}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = settings.data_dir / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "segstream.app.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2"], stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = 0
        deadline = time.monotonic() + 90
        while ready < 6 and time.monotonic() < deadline:  # both workers loaded the model
            try:
                ok = httpx.get(f"{url}/readyz", timeout=2,
                               headers={"Connection": "close"}).status_code == 200
                ready = ready + 1 if ok else 0
            except httpx.HTTPError:
                ready = 0
            time.sleep(0.2)
        assert ready >= 6, log.read_text()[-2000:]

        n = 60
        for i in range(n):  # a new connection each time, so both workers take requests
            r = httpx.get(f"{url}/v1/users/user-{i % 3}/segment", timeout=5,
                          headers={"X-API-Key": "k-123", "Connection": "close"})
            assert r.status_code == 200, r.text
        for _ in range(8):  # whichever worker answers the scrape sees all workers' counts
            text = httpx.get(f"{url}/metrics", timeout=5,
                             headers={"Connection": "close"}).text
            counts = [float(v) for v in ROUTE_200.findall(text)]
            assert sum(counts) == n, text[:3000]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
