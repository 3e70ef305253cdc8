"""The demo's and the benchmark's load measurement (segstream/app/loadtest.py): wrk
against a real server on loopback, its figures parsed, errors counted."""

from __future__ import annotations

import shutil

import pytest

from segstream.app.loadtest import lua_paths, run_wrk, serve_bare
from segstream.sources.stack import free_port

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
                                reason="wrk is not installed (make setup installs it)")


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_wrk_figures_of_the_bare_endpoint_and_errors_counted(server: str) -> None:
    port = free_port()
    proc = serve_bare(port, server)
    try:
        url = f"http://127.0.0.1:{port}"
        ok = run_wrk(url, lua_paths([f"/bare/u{i}" for i in range(10)]), 1, 4)
        assert ok["rps"] > 100 and 0 < ok["p50"] <= ok["p99"]
        assert ok["non2xx"] == 0 and ok["socket_errors"] == 0
        missing = run_wrk(url, lua_paths(["/no/such/path"]), 1, 4)
        assert missing["non2xx"] > 0  # every answer a 404, and counted
    finally:
        proc.terminate()
        proc.wait(10)
