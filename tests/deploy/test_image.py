"""The Dockerfile (no engine here: its structure) and its entrypoint (run for real, with
stand-ins for spark-submit and java that print the command line they were given)."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from pathlib import Path

from tests.support.deploy import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]


def test_multi_stage_non_root_with_java_and_tini() -> None:
    build, runtime = stages()
    assert " AS build" in build.splitlines()[0] and " AS runtime" in runtime.splitlines()[0]
    assert "pip install" in build and "pip install" not in runtime, "install in the build stage"
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert "openjdk-17-jre-headless" in runtime and "tini" in runtime
    (user,) = re.findall(r"^USER (\S+)", runtime, re.M)
    assert user.split(":")[0] == "10001", "run as the non-root uid the k8s pods expect"
    (entry,) = re.findall(r"^ENTRYPOINT (.+)$", runtime, re.M)
    assert entry == '["/usr/bin/tini", "--", "/opt/segstream/entrypoint.sh"]'
    assert "COPY --chmod=0755 deploy/docker/entrypoint.sh /opt/segstream/entrypoint.sh" in runtime


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    rules = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln and not ln.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    sources = [s for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, re.M)
               for s in line.split()[:-1] if not s.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        assert included(src.rstrip("/")), f"COPY {src}: excluded by .dockerignore"
    for package in ("segstream", "streaming", "training", "serving"):
        assert f"COPY {package} ./{package}" in DOCKERFILE, f"the image lacks {package}/"


def _entrypoint(tmp_path: Path, *args: str, **env: str) -> list[str]:
    spark_home, java_home = tmp_path / "spark", tmp_path / "java"
    for tool in (spark_home / "bin" / "spark-submit", java_home / "bin" / "java"):
        tool.parent.mkdir(parents=True, exist_ok=True)
        tool.write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {tmp_path}/argv\n')
        tool.chmod(0o755)
    base = {"PATH": os.environ["PATH"], "SPARK_HOME": str(spark_home),
            "JAVA_HOME": str(java_home)}
    out = subprocess.run(["bash", str(ENTRYPOINT), *args], env={**base, **env},
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    argv = tmp_path / "argv"
    return argv.read_text().splitlines() if argv.exists() else out.stdout.splitlines()


def test_entrypoint_starts_a_spark_driver_in_client_mode(tmp_path: Path) -> None:
    argv = _entrypoint(tmp_path, "driver", "--properties-file", "/opt/spark/conf/p",
                       "local:///opt/segstream/main.py", "stream",
                       SPARK_DRIVER_BIND_ADDRESS="10.0.0.7")
    assert argv == ["--conf", "spark.driver.bindAddress=10.0.0.7", "--deploy-mode", "client",
                    "--properties-file", "/opt/spark/conf/p",
                    "local:///opt/segstream/main.py", "stream"]


def test_entrypoint_starts_an_executor_with_its_java_options_in_order(tmp_path: Path) -> None:
    env = {"SPARK_EXECUTOR_MEMORY": "2g", "SPARK_DRIVER_URL": "spark://d:7078",
           "SPARK_EXECUTOR_ID": "3", "SPARK_EXECUTOR_CORES": "1", "SPARK_APPLICATION_ID": "a1",
           "SPARK_EXECUTOR_POD_IP": "10.0.0.9", "SPARK_RESOURCE_PROFILE_ID": "0",
           "SPARK_EXECUTOR_POD_NAME": "stream-exec-3",
           "SPARK_JAVA_OPT_10": "-Dten", "SPARK_JAVA_OPT_2": "-Dtwo", "SPARK_JAVA_OPT_0": "-Dzero"}
    argv = _entrypoint(tmp_path, "executor", **env)
    spark_home = tmp_path / "spark"
    assert argv == ["-Dzero", "-Dtwo", "-Dten", "-Xms2g", "-Xmx2g",
                    "-cp", f"{spark_home}/conf:{spark_home}/jars/*",
                    "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
                    "--driver-url", "spark://d:7078", "--executor-id", "3", "--cores", "1",
                    "--app-id", "a1", "--hostname", "10.0.0.9", "--resourceProfileId", "0",
                    "--podName", "stream-exec-3"]


def test_entrypoint_runs_any_other_command_as_given(tmp_path: Path) -> None:
    assert _entrypoint(tmp_path, "echo", "segstream", "serve") == ["segstream serve"]
