"""The API run by a real uvicorn server on a free loopback port, and the key tests call
it with."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from segstream.config import Settings
from segstream.serving.churn import ChurnSource
from segstream.serving.model_source import ModelSource
from segstream.sources.stack import free_port

API_KEY = "k-test-0123456789"


@dataclass
class Api:
    """A running API (``api_factory`` in tests/serving/conftest.py): its base URL, its
    settings and model source, and the headers that authenticate a call."""

    url: str
    settings: Settings
    source: ModelSource
    headers: dict[str, str]


@contextlib.contextmanager
def run_api(settings: Settings, source: ModelSource, churn_source: ChurnSource | None = None
            ) -> Iterator[str]:
    """Serve ``create_app`` with uvicorn in a thread; yields the base URL. No churn model
    unless ``churn_source`` gives one."""
    import uvicorn

    from segstream.serving.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(settings, source, churn_source), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
