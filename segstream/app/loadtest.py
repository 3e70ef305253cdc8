"""Lookup load measured the way the serving benchmark measures it: wrk (``-t1 -c32``)
against the API and, in the same run, against a bare FastAPI endpoint served the same
way (the API's server, granian or uvicorn: one worker, uvloop, no access log), so that a
figure comes with the machine's own ceiling beside it.

Used by the demo's summary and by ``benchmarks/serving.py``.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

WRK = ("wrk", "-t1")


def bare_app() -> FastAPI:
    """A FastAPI JSON endpoint that does nothing: the framework's own cost."""
    app = FastAPI()

    @app.get("/bare/{user_id}")
    async def bare(user_id: str) -> dict[str, object]:
        return {"user_id": user_id, "segment_id": 1, "persona": "bare"}

    return app


def serve_bare(port: int, server: str = "uvicorn") -> subprocess.Popen[bytes]:
    """The bare app in its own process on loopback, as ``segstream serve --server`` serves
    the API (one worker)."""
    app = "segstream.app.loadtest:bare_app"
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if server == "granian":
        command = ["granian", "--interface", "asgi", "--factory", "--loop", "uvloop",
                   "--no-access-log", "--log-level", "warning", *address, app]
    else:
        command = ["uvicorn", app, "--factory", *address, "--loop", "uvloop", "--http",
                   "httptools", "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen([sys.executable, "-m", *command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the bare endpoint did not come up on 127.0.0.1:{port}")


def lua_paths(paths: list[str], headers: dict[str, str] | None = None) -> str:
    """A wrk script that requests one of ``paths`` at random."""
    quoted = ", ".join(f'"{p}"' for p in paths)
    head = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    return (f"{head}local paths = {{{quoted}}}\n"
            "request = function()\n"
            "  return wrk.format(\"GET\", paths[math.random(1, #paths)])\nend\n")


def run_wrk(url: str, script: str | Path, duration_s: int, connections: int
            ) -> dict[str, float]:
    """rps, p50 and p99 (ms), non-2xx count and whether sockets failed, of one wrk run.
    ``script`` is a Lua file or its text."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(script) if isinstance(script, Path) else Path(tmp) / "load.lua"
        if not isinstance(script, Path):
            path.write_text(script)
        out = subprocess.run([*WRK, f"-c{connections}", f"-d{duration_s}s", "--latency",
                              "-s", str(path), url], capture_output=True, text=True,
                             check=True)
    text = out.stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            raise RuntimeError(f"no {label} in wrk output:\n{text}")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{text}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    return {"rps": float(rps.group(1)), "p50": ms("50%"), "p99": ms("99%"),
            "non2xx": float(errors.group(1)) if errors else 0.0,
            "socket_errors": 1.0 if sock else 0.0}


def lookup_against_bare(api_url: str, user_ids: list[str], *, duration_s: int = 3,
                        connections: int = 32, headers: dict[str, str] | None = None,
                        server: str = "uvicorn") -> dict[str, Any]:
    """Segment lookups of ``user_ids`` against the API, then the bare endpoint on a free
    port, each after a 1 s warm-up; both figures from one run."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: `sudo apt-get install -y wrk` "
                           "(`make setup` does)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    lookups = lua_paths([f"/v1/users/{u}/segment" for u in user_ids[:1000]], headers)
    bare = lua_paths([f"/bare/u{i}" for i in range(100)])
    proc = serve_bare(port, server)
    try:
        out: dict[str, Any] = {"server": server}
        for name, url, script in (("lookup", api_url, lookups),
                                  ("bare", f"http://127.0.0.1:{port}", bare)):
            run_wrk(url, script, 1, connections)
            out[name] = run_wrk(url, script, duration_s, connections)
        out["wrk"] = f"wrk -t1 -c{connections}, {duration_s} s each"
        return out
    finally:
        proc.terminate()
        proc.wait(10)
