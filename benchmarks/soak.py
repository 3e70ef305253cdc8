"""Soak: a steady event rate through the stream for minutes, with concurrent lookups and
a model update in the middle; RSS, errors, lag and latency over time.

    .venv/bin/python -m benchmarks.soak [--minutes 10] [--events-per-s 2000]
        [--lookup-rps 200] [--interval 10] [--out docs/soak.png] [--keep-dir]

Everything it measures it starts, on free loopback ports in its own temp data dir, and
stops by PID at the end: the embedded broker, a redis-server, ``segstream stream
--trigger 1s --metrics-port P`` (a subprocess: the Python driver, its JVM and the JVM's
Python workers) and, after a warm-up, ``segstream train`` on the job's Parquet history
and ``segstream serve`` (one uvicorn worker, API key on). Timeline, from the moment the
job has read its first records:

- the whole run: a producer thread sends generated events (segstream.sources.generator, no
  malformed/duplicate/late records; one day of 5,000 users repeated a day later each
  chunk, so per-user event time only moves forward) at ``--events-per-s``;
- after the warm-up (15 % of the run, 20-60 s): train (k=7), start the API, then wrk
  (``-c4``, each connection pausing between requests, so about ``--lookup-rps``) on
  ``GET /v1/users/{id}/segment`` of ids the job has written, in back-to-back slices of
  one interval, until the end;
- at half time: ``segstream update --once`` (one candidate from the features topic,
  through the gates); if the gates keep the champion, a fresh ``train`` instead. The
  API's registry poll (2 s) must then serve the new version: seen in the lookups'
  ``model_version`` and in /readyz.

Every interval it samples the job's /metrics (lag summed over partitions, records
read, dead letters, batch duration), the records sent (backlog = sent - read), the
interval's wrk slice (rps, p50, p99, non-2xx, socket errors, versions in the answers),
/readyz, and VmRSS of every process from /proc. At the end it lets the job drain
(bounded), counts the topics on the broker, prints a Markdown table and a summary, and
writes a plot of lag, p99 and RSS over time to ``--out``. Errors: HTTP non-2xx, socket
errors and timeouts, failed /readyz probes, producer delivery failures, dead letters,
dropped duplicates (none are sent), a service process exiting, a train/update command
failing, the API not serving the new version. Nothing is asserted about
timing; the exit status is 1 if any error was counted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import machine

API_KEY = "soak-key-0123456789"
USERS = 5000
DAY_MS = 86_400_000
STREAM_PROCS = ("stream JVM", "stream driver", "stream py workers")
PROCS = ("broker", "redis", *STREAM_PROCS, "API")

LOOKUP_LUA = """
wrk.headers["X-API-Key"] = "%(key)s"
local ids = {%(ids)s}
local threads, counter = {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(os.time() * 100 + id)
  statuses, versions = {}, {}
end
function delay() return %(delay_ms)d end
request = function()
  return wrk.format("GET", "/v1/users/" .. ids[math.random(#ids)] .. "/segment")
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local v = body:match('"model_version":"([^"]*)"')
  if v then versions[v] = (versions[v] or 0) + 1 end
end
local function pairs_json(t)
  local out = {}
  for k, n in pairs(t) do out[#out + 1] = string.format('"%%s":%%d', tostring(k), n) end
  return "{" .. table.concat(out, ",") .. "}"
end
function done(summary, latency, requests)
  local st, ve = {}, {}
  for _, t in ipairs(threads) do
    for k, n in pairs(t:get("statuses")) do st[k] = (st[k] or 0) + n end
    for k, n in pairs(t:get("versions")) do ve[k] = (ve[k] or 0) + n end
  end
  local e = summary.errors
  io.write(string.format('SOAK-JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,' ..
    '"p99_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"timeout":%%d,"statuses":%%s,' ..
    '"versions":%%s}\\n', summary.requests, summary.duration,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)), e.connect,
    e.read, e.write, e.timeout, pairs_json(st), pairs_json(ve)))
end
"""


# ------------------------------------------------------------------ processes
def proc_start(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (guards against a recycled pid), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stream_rss(root: int) -> dict[str, float]:
    """RSS of the job's tree: the driver, its JVM (``java``), the JVM's Python workers
    (summed; their count under ``workers``). Shell wrappers are left out."""
    out = {"stream driver": rss_mib(root) or 0.0, "stream JVM": 0.0,
           "stream py workers": 0.0, "workers": 0.0}
    for pid in descendants(root):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        rss = rss_mib(pid) or 0.0
        if comm == "java":
            out["stream JVM"] += rss
        elif comm.startswith("python"):
            out["stream py workers"] += rss
            out["workers"] += 1
    return out


def terminate(pids: list[tuple[int, int | None]], timeout_s: float) -> None:
    """SIGTERM each (pid, start time) still running the same process, wait, SIGKILL."""
    def alive(pid: int, start: int | None) -> bool:
        return start is not None and proc_start(pid) == start

    for pid, start in pids:
        if alive(pid, start):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p, s) for p, s in pids):
        time.sleep(0.2)
    for pid, start in pids:
        if alive(pid, start):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ the run's state
@dataclass
class Run:
    tmp: Path
    env: dict[str, str]
    bootstrap: str
    redis_url: str
    metrics_url: str
    interval: float
    errors: dict[str, int] = field(default_factory=dict)
    events: list[tuple[float, str]] = field(default_factory=list)  # (t, what happened)
    api: subprocess.Popen[bytes] | None = None
    api_url: str | None = None
    lua: Path | None = None
    t0: float = 0.0
    prime: int = 0  # records sent before t0 (read by the job before the run starts)
    sent: int = 0  # records sent since t0
    champion_before: str | None = None
    champion_after: str | None = None
    update_how: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, kind: str, n: int = 1) -> None:
        if n:
            with self.lock:
                self.errors[kind] = self.errors.get(kind, 0) + n

    def note(self, what: str) -> None:
        t = time.monotonic() - self.t0
        print(f"[{t:6.1f} s] {what}", flush=True)
        self.events.append((t, what))

    def cli(self, name: str, *argv: str, timeout_s: float = 900
            ) -> subprocess.CompletedProcess[str]:
        log = self.tmp / "logs" / f"{name}.log"
        with open(log, "a") as out:
            return subprocess.run([sys.executable, "-m", "segstream.app.cli", *argv], env=self.env,
                                  stdout=out, stderr=subprocess.STDOUT, text=True,
                                  timeout=timeout_s, check=False)


def train(run: Run, history: str) -> bool:
    """`segstream train`; a failure is an error, named with its cause (exit 3: the gates
    kept the champion, e.g. on too little new data in a short run)."""
    code = run.cli("train", "train", "--from", history, "--k", "7").returncode
    if code == 0:
        return True
    run.error("train failed")
    why = "the quality gates kept the champion" if code == 3 else "it failed"
    run.note(f"train exited {code}: {why}; see logs/train.log")
    return False


def job_metrics(url: str) -> dict[str, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=5).text
    out = {"lag": 0.0, "input": 0.0, "dlq": 0.0, "duplicates": 0.0, "batches": 0.0,
           "batch_s_sum": 0.0, "batch_s_count": 0.0}
    names = {"segstream_stream_partition_lag_records": "lag",
             "segstream_stream_input_records_total": "input",
             "segstream_stream_dlq_records_total": "dlq",
             "segstream_stream_duplicate_records_total": "duplicates",
             "segstream_stream_batches_total": "batches",
             "segstream_stream_batch_duration_seconds_sum": "batch_s_sum",
             "segstream_stream_batch_duration_seconds_count": "batch_s_count"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                out[names[sample.name]] += sample.value
    return out


# ------------------------------------------------------------------ events in
def records(rate: int, minutes: float) -> Iterator[tuple[bytes | None, bytes]]:
    """Generated events without end: chunk k is one day of the same ``USERS`` users,
    shifted k days (the same seed: personas stay). The generator numbers its ids per
    log, so each chunk's ids get the chunk's prefix: a repeated id is a duplicate when
    the user's previous records are recent, whatever its time (streaming/arrivals.py).
    The days end before today, so no event is ahead of the clock."""
    from segstream.sources.generator import GeneratorConfig, stream

    chunk = max(USERS * 4, rate * 30)
    days = int(minutes * 2) + 5  # a chunk is 30 s of events: enough, with room
    first = (int(time.time() * 1000) // DAY_MS - days - 1) * DAY_MS
    for k in range(days):
        start = datetime.fromtimestamp((first + k * DAY_MS) / 1000, UTC).isoformat()
        _, recs = stream(GeneratorConfig(users=USERS, events=chunk, seed=11, start=start,
                                         days=1.0))
        prefix = b'"event_id":"c%02d-e' % k
        for key, value, _kind in recs:
            yield key, value.replace(b'"event_id":"e', prefix, 1)
    raise RuntimeError(f"the soak ran out of generated days ({days})")


def produce(run: Run, recs: Iterator[tuple[bytes | None, bytes]], rate: int,
            stop: threading.Event) -> None:
    from segstream.adapters.kafka import KafkaUnavailable, Producer

    producer = Producer(run.bootstrap)
    start, sent = time.monotonic(), 0
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            key, value = next(recs)
            producer.send("events", value, key=key)
            sent += 1
        run.sent = sent
        time.sleep(0.01)
    try:
        producer.close()
    except KafkaUnavailable as exc:
        run.note(f"producer: {exc}")
        run.error("producer delivery", max(producer.failed, 1))
    run.sent = sent


# ------------------------------------------------------------------ lookups
def wrk_slice(run: Run, seconds: int) -> dict[str, Any]:
    assert run.lua is not None and run.api_url is not None
    out = subprocess.run(["wrk", "-t1", "-c4", f"-d{seconds}s", "--timeout", "2s",
                          "-s", str(run.lua), run.api_url],
                         capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("SOAK-JSON "):
            res: dict[str, Any] = json.loads(line.removeprefix("SOAK-JSON "))
            non2xx = sum(n for s, n in res["statuses"].items() if not s.startswith("2"))
            sock = res["connect"] + res["read"] + res["write"] + res["timeout"]
            run.error("lookup non-2xx", non2xx)
            run.error("lookup socket errors/timeouts", sock)
            res["errors"] = non2xx + sock
            return res
    run.error("wrk failed")
    run.note(f"wrk failed (rc {out.returncode}): {out.stderr[-300:]}")
    return {"requests": 0, "errors": 1, "versions": {}}


def known_users(redis_url: str, n: int = 2000) -> list[str]:
    import redis

    from segstream.adapters.redis_keys import feature_key

    client = redis.Redis.from_url(redis_url)
    prefix = feature_key("")
    users = []
    for key in client.scan_iter(feature_key("*"), count=1000):
        users.append(key.decode().removeprefix(prefix))
        if len(users) >= n:
            break
    client.close()
    return users


def champion(run: Run) -> str | None:
    from segstream.adapters.registry import Registry
    from segstream.config import Settings

    version = Registry(Settings(data_dir=run.tmp / "data")).champion_version()
    return None if version is None else str(version)


def readyz_version(run: Run) -> str | None:
    import httpx

    if run.api_url is None:
        return None
    try:
        r = httpx.get(f"{run.api_url}/readyz", timeout=5)
        if r.status_code != 200:
            run.error("readyz not 200")
        return str(r.json()["details"]["model_version"])
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        run.error("readyz failed")
        run.note(f"/readyz: {exc!r}")
        return None


def phases(run: Run, warmup_s: float, update_at_s: float, lookup_rps: int,
           done: threading.Event) -> None:
    """Train, start the API, write the lookup script; at ``update_at_s`` update the model."""
    import httpx

    from segstream.sources.stack import free_port

    def wait_until(t: float) -> bool:
        return not done.wait(max(0.0, t - (time.monotonic() - run.t0)))

    if not wait_until(warmup_s):
        return
    history = str(run.tmp / "data" / "history" / "features")
    run.note("training the first model (segstream train --k 7)")
    if not train(run, history):
        return
    run.champion_before = champion(run)
    run.note(f"champion is version {run.champion_before}; starting the API")
    port = free_port()
    with open(run.tmp / "logs" / "api.log", "ab") as out:
        run.api = subprocess.Popen(
            [sys.executable, "-m", "segstream.app.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"], env=run.env, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if run.api.poll() is not None or time.monotonic() > deadline:
            run.error("API did not start")
            run.note("the API did not become ready; see logs/api.log")
            return
        time.sleep(0.5)
    users = known_users(run.redis_url)
    run.lua = run.tmp / "lookup.lua"
    run.lua.write_text(LOOKUP_LUA % {"key": API_KEY, "delay_ms": round(4000 / lookup_rps),
                                     "ids": ",".join(f'"{u}"' for u in users)})
    run.api_url = url
    run.note(f"API ready at {url} (pid {run.api.pid}); lookups over {len(users):,} "
             "known users")
    if not wait_until(max(update_at_s, time.monotonic() - run.t0 + 2 * run.interval)):
        return
    run.note("model update: segstream update --once")
    if run.cli("update", "update", "--once").returncode != 0:
        run.error("update failed")
        run.note("update --once failed; see logs/update.log")
        return
    after = champion(run)
    run.update_how = "update --once (incremental candidate, gates passed)"
    if after == run.champion_before:
        run.note(f"update --once: the gates kept version {after}; training a new model")
        if not train(run, history):
            return
        after = champion(run)
        run.update_how = "train again (update --once's candidate was rejected by the gates)"
    run.champion_after = after
    run.note(f"champion is now version {after} ({run.update_how})")


# ------------------------------------------------------------------ report
def fmt(x: float | None, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def report(rows: list[dict[str, Any]], run: Run, args: argparse.Namespace,
           final: dict[str, Any]) -> None:
    print(f"\nmachine: {machine()}; load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"soak: {args.minutes:g} min, {args.events_per_s:,} events/s target, "
          f"~{args.lookup_rps} lookups/s target (wrk -c4 with pauses), {USERS:,} users, "
          f"samples every {args.interval:g} s\n")
    head = ["t s", "lag", "backlog", "events/s", "batch s", "lookup rps", "p50 ms", "p99 ms",
            "errors", "version"] + [f"{p} MiB" for p in PROCS]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [f"{r['t']:.0f}", fmt(r["lag"]), fmt(r["backlog"]), fmt(r["eps"]),
                 fmt(r["batch_s"], ".2f"), fmt(r.get("rps")), fmt(r.get("p50"), ".1f"),
                 fmt(r.get("p99"), ".1f"), str(r["errors"]), r.get("version") or "-"]
        cells += [fmt(r["rss"].get(p), ",.0f") for p in PROCS]
        if r["rss"].get("workers"):
            cells[-2] += f" ({r['rss']['workers']:.0f})"
        print("| " + " | ".join(cells) + " |")
    print("\n(lag: the job's segstream_stream_partition_lag_records summed; backlog: records "
          "sent - records the job read; workers: their count in brackets)")
    print("\n| process | RSS first sample MiB | RSS last sample MiB | change |")
    print("|---|---|---|---|")
    for p in PROCS:
        seen = [r["rss"][p] for r in rows if r["rss"].get(p)]
        if seen:
            print(f"| {p} | {seen[0]:,.0f} | {seen[-1]:,.0f} | {seen[-1] - seen[0]:+,.0f} |")
    looked = [r for r in rows if r.get("p99") is not None]
    first_t = looked[0]["t"] if looked else 0
    last_t = looked[-1]["t"] if looked else 0

    def mean_p99(part: list[dict[str, Any]]) -> str:
        return f"{sum(r['p99'] for r in part) / len(part):.1f} ms" if part else "-"

    overlap = " (the lookups ran < 2 min: the minutes overlap)" if last_t - first_t < 120 else ""

    total = sum(run.errors.values())
    print("\n| summary | value |\n|---|---|")
    print(f"| **errors** | **{total}** "
          f"({', '.join(f'{k}: {v}' for k, v in sorted(run.errors.items())) or 'none'}) |")
    print(f"| events sent / read by the job / on the topic | {final['sent']:,} / "
          f"{final['read']:,.0f} / {final['on_topic']:,} |")
    print(f"| dead letters (metric / on events.dlq), duplicates | {final['dlq']:,.0f} / "
          f"{final['dlq_topic']:,}, {final['duplicates']:,.0f} |")
    print(f"| max lag (job metric) / max backlog | {max(r['lag'] for r in rows):,.0f} / "
          f"{max(r['backlog'] for r in rows):,.0f} records |")
    print(f"| drained after the producer stopped | {final['drain']} |")
    print(f"| lookups, total (rps over the lookup phase) | "
          f"{sum(r.get('requests', 0) for r in rows):,} "
          f"({fmt(sum(r.get('rps', 0) for r in looked) / max(len(looked), 1))}) |")
    print(f"| p99, first minute of lookups / last minute (mean of interval p99s) | "
          f"{mean_p99([r for r in looked if r['t'] < first_t + 60])} / "
          f"{mean_p99([r for r in looked if r['t'] > last_t - 60])}{overlap} |")
    print(f"| model update | {run.champion_before} -> {run.champion_after} by "
          f"{run.update_how or '(not reached)'} |")
    print(f"| API serving the new version | {final['served_new']} |")
    print("\n" + "\n".join(f"- {t:.0f} s: {what}" for t, what in run.events))


def plot(rows: list[dict[str, Any]], run: Run, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    axes[0].plot(t, [r["lag"] for r in rows], label="lag (job metric)")
    axes[0].plot(t, [r["backlog"] for r in rows], label="backlog (sent - read)", ls="--")
    axes[0].set_ylabel("records")
    axes[1].plot(t, [r.get("p99") for r in rows], label="lookup p99")
    axes[1].plot(t, [r.get("p50") for r in rows], label="lookup p50", ls="--")
    axes[1].set_ylabel("ms")
    for p in PROCS:
        axes[2].plot(t, [r["rss"].get(p) for r in rows], label=p)
    axes[2].set_ylabel("RSS MiB")
    axes[2].set_xlabel("seconds since the first records were read")
    marks = {"API ready": "API up, lookups start", "champion is now": "new champion",
             "model update": "update --once starts"}
    for when, what in run.events:
        label = next((v for k, v in marks.items() if what.startswith(k)), None)
        if label is not None:
            for ax in axes:
                ax.axvline(when, color="grey", lw=0.8, ls=":")
            axes[0].annotate(label, (when, 0), fontsize=7, rotation=90, va="bottom")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle("segstream soak: lag, lookup latency and RSS over time")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ main
def sample(run: Run, stream: subprocess.Popen[bytes], services: dict[str, int],
           prev: dict[str, float], lookup: dict[str, Any] | None) -> dict[str, Any]:
    import httpx

    t = time.monotonic() - run.t0
    try:
        m = job_metrics(run.metrics_url)
    except httpx.HTTPError as exc:
        run.error("job metrics unreachable")
        run.note(f"job /metrics: {exc!r}")
        m = dict(prev)
    dt = max(t - prev["t"], 1e-9)
    batches = m["batch_s_count"] - prev["batch_s_count"]
    rss = {name: rss_mib(pid) for name, pid in services.items()}
    rss.update(stream_rss(stream.pid))
    if run.api is not None:
        rss["API"] = rss_mib(run.api.pid)
    row: dict[str, Any] = {
        "t": t, "lag": m["lag"], "backlog": run.prime + run.sent - m["input"],
        "eps": (m["input"] - prev["input"]) / dt,
        "batch_s": (m["batch_s_sum"] - prev["batch_s_sum"]) / batches if batches else None,
        "rss": rss, "version": readyz_version(run)}
    if lookup is not None and lookup.get("requests"):
        row.update(rps=lookup["requests"] / (lookup["duration_us"] / 1e6),
                   p50=lookup["p50_us"] / 1000, p99=lookup["p99_us"] / 1000,
                   requests=lookup["requests"], versions=lookup["versions"])
    run.error("dead letters", int(m["dlq"] - prev["dlq"]))
    # the generator sends no repeats: a dropped duplicate is a record read twice
    run.error("duplicates dropped", int(m["duplicates"] - prev["duplicates"]))
    for name, proc in (("stream job exited", stream), ("API exited", run.api)):
        if proc is not None and proc.poll() is not None and name not in run.errors:
            run.error(name)
            run.note(f"{name} with code {proc.returncode}")
    row["errors"] = sum(run.errors.values()) - prev.get("errors_total", 0)
    prev.update(m, t=t, errors_total=sum(run.errors.values()))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--events-per-s", type=int, default=2000)
    parser.add_argument("--lookup-rps", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("docs/soak.png"))
    parser.add_argument("--keep-dir", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: sudo apt-get install -y wrk")
    from segstream.adapters.kafka import count_records, ensure_topics
    from segstream.sources.stack import free_port, start_broker, start_redis, stop_service

    tmp = Path(tempfile.mkdtemp(prefix="segstream-soak-"))
    (tmp / "logs").mkdir()
    broker = start_broker(free_port(), tmp / "logs" / "tansu.log")
    redis_svc = start_redis(free_port(), tmp / "redis", tmp / "logs" / "redis.log")
    stream: subprocess.Popen[bytes] | None = None
    run: Run | None = None
    done, stop_producer = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    try:
        ensure_topics(broker.address, ["events", "events.dlq", "features", "segment-changes"], 4)
        metrics_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
        env.update({"SEGSTREAM_DATA_DIR": str(tmp / "data"),
                    "SEGSTREAM_KAFKA_BOOTSTRAP": broker.address,
                    "SEGSTREAM_REDIS_URL": redis_svc.address,
                    "SEGSTREAM_SPARK_SHUFFLE_PARTITIONS": "2",
                    "SEGSTREAM_API_KEYS": json.dumps([API_KEY]),
                    "SEGSTREAM_API_MODEL_POLL_S": "2",
                    "SEGSTREAM_LOG_LEVEL": "WARNING",
                    # one candidate per `update --once`, at its end (not one per 50k rows)
                    "SEGSTREAM_UPDATE_PUBLISH_ROWS": "100000000",
                    "SEGSTREAM_UPDATE_PUBLISH_MINUTES": "600",
                    "PYSPARK_PYTHON": sys.executable})
        run = Run(tmp, env, broker.address, redis_svc.address,
                  f"http://127.0.0.1:{metrics_port}/metrics", args.interval)
        with open(tmp / "logs" / "stream.log", "ab") as out:
            stream = subprocess.Popen(
                [sys.executable, "-m", "segstream.app.cli", "stream", "--trigger", "1s",
                 "--metrics-port", str(metrics_port)], env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        recs = records(args.events_per_s, args.minutes)
        prime = run.prime = 1000  # t=0 once the job has read these: Spark's start-up is not soak
        from segstream.adapters.kafka import Producer

        producer = Producer(broker.address)
        for _ in range(prime):
            key, value = next(recs)
            producer.send("events", value, key=key)
        producer.close()
        deadline = time.monotonic() + 300
        while True:
            try:
                if job_metrics(run.metrics_url)["input"] >= prime:
                    break
            except Exception:  # the endpoint is not up yet
                pass
            if stream.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stream job did not start; see {tmp}/logs/stream.log")
            time.sleep(0.5)
        run.t0 = time.monotonic()
        run.note(f"stream job reading (pid {stream.pid}); producing "
                 f"{args.events_per_s:,} events/s")
        duration = args.minutes * 60
        threads = [threading.Thread(target=produce, args=(run, recs, args.events_per_s,
                                                          stop_producer), daemon=True),
                   threading.Thread(target=phases, daemon=True, args=(
                       run, min(max(0.15 * duration, 20.0), 60.0), duration / 2,
                       args.lookup_rps, done))]
        for th in threads:
            th.start()
        services = {"broker": broker.pid or 0, "redis": redis_svc.pid or 0}
        prev: dict[str, float] = {"t": 0.0, **job_metrics(run.metrics_url)}
        rows: list[dict[str, Any]] = []
        k = 1
        while (next_t := k * args.interval) <= duration + 0.5:
            lookup = None
            wait = next_t - (time.monotonic() - run.t0)
            if run.lua is not None and wait >= 1:
                lookup = wrk_slice(run, round(wait))
            time.sleep(max(0.0, next_t - (time.monotonic() - run.t0)))
            rows.append(sample(run, stream, services, prev, lookup))
            r = rows[-1]
            print(f"  t={r['t']:5.0f} s lag {r['lag']:,.0f} backlog {r['backlog']:,.0f} "
                  f"in {r['eps']:,.0f}/s lookups {fmt(r.get('rps'))}/s p99 "
                  f"{fmt(r.get('p99'), '.1f')} ms errors {sum(run.errors.values())} "
                  f"version {r['version']}", flush=True)
            k += 1
        done.set()
        stop_producer.set()
        threads[0].join(60)
        threads[1].join(5)
        if threads[1].is_alive():
            run.note("the train/update phase was still running at the end (run too short?)")
            run.error("phase unfinished")
        drain = "no (job gone)"
        deadline = time.monotonic() + 60
        while stream.poll() is None and time.monotonic() < deadline:
            try:
                m = job_metrics(run.metrics_url)
            except Exception:  # the job is stopping; its exit is counted below
                time.sleep(1)
                continue
            if m["input"] - prime >= run.sent:
                drain = f"yes, in {60 - (deadline - time.monotonic()):.0f} s"
                break
            time.sleep(1)
        else:
            if stream.poll() is None:
                drain = "no, within 60 s"
                run.error("not drained")  # records sent and never read: a stuck job
        try:
            m = job_metrics(run.metrics_url)
        except Exception:  # gone: the last sample's figures
            m = prev
        if stream.poll() is not None and "stream job exited" not in run.errors:
            run.error("stream job exited")
        run.error("dead letters", int(m["dlq"] - prev["dlq"]))
        run.error("duplicates dropped", int(m["duplicates"] - prev["duplicates"]))
        versions_after = [v for r in rows if r["t"] > max(
            (t for t, w in run.events if w.startswith("champion is now")), default=1e18)
            for v in r.get("versions", {})]
        new = run.champion_after
        served_new = (f"yes: lookups answered by version {new} after the update "
                      f"({sorted(set(versions_after))} seen after it)"
                      if new and new in versions_after else
                      f"no ({sorted(set(versions_after))} seen after the update)")
        if new and new not in versions_after:
            run.error("new version not served")
        final = {"sent": run.sent + prime, "read": m["input"], "dlq": m["dlq"],
                 "duplicates": m["duplicates"], "drain": drain, "served_new": served_new,
                 "on_topic": count_records(broker.address, "events"),
                 "dlq_topic": count_records(broker.address, "events.dlq")}
        report(rows, run, args, final)
        plot(rows, run, args.out)
        print(f"\nplot: {args.out}; logs: {tmp / 'logs'}"
              f"{'' if args.keep_dir else ' (removed)'}")
        return 1 if run.errors else 0
    finally:
        done.set()
        stop_producer.set()
        for th in threads:
            th.join(10)
        if run is not None and run.api is not None:
            terminate([(run.api.pid, proc_start(run.api.pid))], 15)
        if stream is not None:
            tree = [(p, proc_start(p)) for p in (stream.pid, *descendants(stream.pid))]
            terminate(tree[:1], 90)  # SIGTERM: the driver finishes its batch, stops Spark
            terminate(tree[1:], 10)  # anything it left behind
            stream.wait(5)
        if run is not None and run.api is not None:
            run.api.wait(5)
        stop_service(redis_svc)
        stop_service(broker)
        if not args.keep_dir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
