"""The MLflow registry unreachable, for real: an ``mlflow server`` subprocess owned by
the test, stopped by its PID and started again on the same port and store.

* A running API keeps serving the last good model; /readyz stays ready and says it is
  serving the last good model, naming the registry and the cause;
  ``segstream_model_registry_up`` is 0; when the server is back the API follows the
  champion again by itself.
* An API started while the registry is down starts at once (/healthz 200), is not
  ready and says why (the registry, not "no champion"), and becomes ready by itself.
* ``segstream update`` / ``models list`` against a stopped registry exit 1 with a
  message naming the URI and what to do, never a traceback or an empty answer; update
  retries (MLflow's per-request retries) and goes on if the registry comes back.
* A registry URI with credentials (``user:password@``) never shows them: not in the
  error, not on /readyz, not in the logs.
* MLflow's short poll retries are set by the polling processes' entry points
  (``segstream serve`` and its uvicorn workers, ``webhooks detect``), not by building a
  ``RegistrySource``, which would change them for training in the same process.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from segstream.config import Settings
from segstream.serving.model_source import POLL_ENV_DEFAULTS, RegistrySource, use_poll_env_defaults
from segstream.sources.stack import free_port
from tests.support.api import API_KEY, run_api
from tests.support.archetypes import put_users
from tests.support.models import make_model, model_registry
from tests.support.servers import MlflowServer

pytestmark = [pytest.mark.mlflow, pytest.mark.redis]
HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture(autouse=True)
def _poll_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's retries as `segstream serve` / `webhooks detect` set them for their own
    process (``use_poll_env_defaults``): the in-process APIs here are such processes."""
    for name, value in POLL_ENV_DEFAULTS.items():
        monkeypatch.setenv(name, value)


def _registry_up(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    (value,) = re.findall(r"^segstream_model_registry_up (\S+)$", text, re.M)
    return float(value)


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> float:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout_s, f"not {what} within {timeout_s} s"
        time.sleep(0.1)
    return time.monotonic() - t0


def _details(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/readyz").json()["details"])


def _segment_version(url: str) -> str:
    r = httpx.get(f"{url}/v1/users/u/segment", headers=HEADERS)
    assert r.status_code == 200, r.text
    return str(r.json()["model_version"])


def test_registry_down_keeps_the_last_good_model_then_follows_the_champion_again(
        mlflow_server: MlflowServer, settings_factory: Callable[..., Settings],
        redis_client: Any) -> None:
    settings = settings_factory(registry_uri=mlflow_server.uri, api_keys=[API_KEY],
                                api_model_poll_s=0.2)
    registry = model_registry(settings)
    v1 = registry.register(make_model())
    registry.set_alias(v1, "champion")
    put_users(redis_client, {"u": 1})
    with run_api(settings, RegistrySource(settings)) as url:
        assert _segment_version(url) == v1
        assert _details(url)["registry_ok"] is True and _registry_up(url) == 1.0

        mlflow_server.stop()
        took = _wait("registry down", lambda: not _details(url)["registry_ok"])
        assert took < 5.0, f"the outage showed after {took:.1f} s"
        r = httpx.get(f"{url}/readyz")
        assert r.status_code == 200, "still ready: it serves the last good model"
        details = r.json()["details"]
        assert details["serving_last_good_model"] is True
        assert details["model_version"] == v1
        assert mlflow_server.uri in details["registry_error"], details
        assert "RegistryUnavailable" in details["registry_error"], details
        assert _registry_up(url) == 0.0
        assert {_segment_version(url) for _ in range(20)} == {v1}

        mlflow_server.start()  # same port, same store
        _wait("registry up", lambda: _details(url)["registry_ok"])
        assert _registry_up(url) == 1.0
        v2 = registry.register(make_model(centroid_shift=0.01))
        registry.set_alias(v2, "champion")
        _wait("the new champion served", lambda: _segment_version(url) == v2)
        assert _details(url)["registry_error"] is None


def test_api_started_while_the_registry_is_down_starts_then_becomes_ready(
        mlflow_server: MlflowServer, settings_factory: Callable[..., Settings],
        redis_client: Any) -> None:
    settings = settings_factory(registry_uri=mlflow_server.uri, api_keys=[API_KEY],
                                api_model_poll_s=0.2)
    registry = model_registry(settings)
    registry.set_alias(registry.register(make_model()), "champion")
    put_users(redis_client, {"u": 1})
    mlflow_server.stop()
    t0 = time.monotonic()
    with run_api(settings, RegistrySource(settings)) as url:
        assert time.monotonic() - t0 < 10.0, "start-up waited on the registry"
        assert httpx.get(f"{url}/healthz").status_code == 200
        r = httpx.get(f"{url}/readyz")
        assert r.status_code == 503
        error = r.json()["details"]["registry_error"]
        assert mlflow_server.uri in error and "no champion" not in error, error
        lookup = httpx.get(f"{url}/v1/users/u/segment", headers=HEADERS)
        assert lookup.status_code == 503 and lookup.json()["error"]["code"] == "unavailable"

        mlflow_server.start()
        _wait("ready", lambda: httpx.get(f"{url}/readyz").status_code == 200)
        assert _segment_version(url) == "1"


def _cli(settings: Settings, kafka_bootstrap: str, *args: str, **env: str
         ) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SEGSTREAM_", "MLFLOW_"))}
    base.update(SEGSTREAM_DATA_DIR=str(settings.data_dir),
                SEGSTREAM_REGISTRY_URI=str(settings.registry_uri),
                SEGSTREAM_KAFKA_BOOTSTRAP=kafka_bootstrap,
                SEGSTREAM_TOPIC_FEATURES=settings.topic_features, COLUMNS="200", **env)
    return subprocess.Popen([str(Path(sys.executable).parent / "segstream"), *args],
                            env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow  # ~23 s: three CLI processes and an MLflow server start
def test_update_against_a_stopped_registry_reports_then_retries_until_it_is_back(
        mlflow_server: MlflowServer, settings_factory: Callable[..., Settings],
        topic_factory: Callable[..., str], kafka_bootstrap: str) -> None:
    settings = settings_factory(registry_uri=mlflow_server.uri,
                                topic_features=topic_factory("features", partitions=1))
    registry = model_registry(settings)
    registry.set_alias(registry.register(make_model()), "champion")
    mlflow_server.stop()

    for args in (("update", "--once"), ("models", "list")):
        proc = _cli(settings, kafka_bootstrap, *args, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, (args, out, err)
        text = " ".join((out + err).split())
        assert "Traceback" not in text, (args, text)
        assert f"the model registry at {mlflow_server.uri}" in text, (args, text)
        assert "MLflow tracking server" in text and "SEGSTREAM_REGISTRY_URI" in text, text
        assert "train and promote" not in text, "an outage is not a missing champion"

    # MLflow retries each request (here 0 + 2 + 4 + 8 s of backoff): back within that
    # window, the update goes on as if nothing happened
    proc = _cli(settings, kafka_bootstrap, "update", "--once",
                MLFLOW_HTTP_REQUEST_MAX_RETRIES="4", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
                MLFLOW_HTTP_REQUEST_BACKOFF_JITTER="0")
    try:
        time.sleep(1.0)
        mlflow_server.start()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (out, err)
    assert "updating from champion 1" in out and "read 0 messages; champion is 1" in out


def test_registry_credentials_never_reach_a_message_readyz_or_the_logs(
        settings_factory: Callable[..., Settings], redis_client: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    from segstream.adapters.registry import RegistryUnavailable

    password, port = "s3cret-pw-42", free_port()  # nothing listens on the port
    settings = settings_factory(registry_uri=f"http://segstream:{password}@127.0.0.1:{port}",
                                api_keys=[API_KEY], api_model_poll_s=0.2)
    with pytest.raises(RegistryUnavailable) as raised:
        model_registry(settings).champion_version()
    message = str(raised.value)
    assert f"the model registry at http://127.0.0.1:{port} failed" in message, message
    assert password not in message and "segstream:" not in message, message

    with caplog.at_level(logging.WARNING), run_api(settings, RegistrySource(settings)) as url:
        _wait("the outage on /readyz", lambda: _details(url)["registry_error"] is not None)
        body = httpx.get(f"{url}/readyz").text
    assert f"127.0.0.1:{port}" in body and "RegistryUnavailable" in body, body
    assert password not in body and "segstream:" not in body, body
    assert f"127.0.0.1:{port}" in caplog.text
    assert password not in caplog.text, caplog.text


def test_a_registry_source_leaves_mlflow_retries_to_the_process(
        settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in POLL_ENV_DEFAULTS:
        monkeypatch.delenv(name)
    RegistrySource(settings_factory())  # training in this process keeps MLflow's defaults
    assert not set(POLL_ENV_DEFAULTS) & set(os.environ)
    use_poll_env_defaults()  # what the entry points call
    assert {n: os.environ[n] for n in POLL_ENV_DEFAULTS} == POLL_ENV_DEFAULTS
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    use_poll_env_defaults()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3", "the operator's value wins"


def _clean_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SEGSTREAM_", "MLFLOW_", "PROMETHEUS_MULTIPROC"))}
    env.update(SEGSTREAM_DATA_DIR=str(settings.data_dir),
               SEGSTREAM_REGISTRY_URI=str(settings.registry_uri), **extra)
    return env


POLL_HINT = "tried 2 times with backoff (MLFLOW_HTTP_REQUEST_MAX_RETRIES, " \
    "MLFLOW_HTTP_REQUEST_TIMEOUT=10 s)"  # the short retries, as the message reports them


def test_serve_workers_and_detect_poll_with_short_retries_set_at_their_entry_point(
        settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
        kafka_bootstrap: str, redis_url: str) -> None:
    """With MLflow's defaults (7 retries, about 4 minutes on a closed port) neither
    would report the outage within these timeouts."""
    password, closed = "s3cret-pw-42", free_port()
    settings = settings_factory(registry_uri=f"http://u:{password}@127.0.0.1:{closed}",
                                topic_features=topic_factory("features", partitions=1))
    port = free_port()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = settings.data_dir / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "segstream"), "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2"], stdout=out, stderr=subprocess.STDOUT,
            env=_clean_env(settings, SEGSTREAM_REDIS_URL=redis_url,
                           SEGSTREAM_API_KEYS=f'["{API_KEY}"]'), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        errors: list[str] = []

        def reported() -> bool:  # a new connection each time: either worker answers
            try:
                r = httpx.get(f"{url}/readyz", timeout=2, headers={"Connection": "close"})
            except httpx.HTTPError:
                return False
            error = r.json()["details"].get("registry_error")
            errors.extend([error] if error else [])
            return len(errors) >= 10

        _wait("the outage on /readyz", reported, timeout_s=60)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # workers stuck in MLflow's retries
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: it and its workers
            proc.wait()
    for error in errors:
        assert POLL_HINT in error and password not in error, error
    assert password not in log.read_text()

    detect = subprocess.run(
        [str(Path(sys.executable).parent / "segstream"), "webhooks", "detect",
         "--available-now"], capture_output=True, text=True, timeout=60,
        env=_clean_env(settings, SEGSTREAM_REDIS_URL=redis_url,
                       SEGSTREAM_KAFKA_BOOTSTRAP=kafka_bootstrap,
                       SEGSTREAM_TOPIC_FEATURES=settings.topic_features))
    assert detect.returncode != 0
    assert POLL_HINT in " ".join(detect.stderr.split()), detect.stderr[-3000:]
