#!/usr/bin/env bash
# Idempotent setup for a fresh Debian/Ubuntu machine with Python 3.11+ and Java 17:
# system packages the tests and the local stack need, then .venv with segstream.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v prometheus  >/dev/null 2>&1 || need_apt+=(prometheus)
[ -x /usr/bin/promtool ]             || need_apt+=(prometheus)  # tests/deploy: rule checks
command -v java        >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v wrk         >/dev/null 2>&1 || need_apt+=(wrk)  # serving benchmark load generator
command -v chromium    >/dev/null 2>&1 || need_apt+=(chromium)  # tests/training/test_report.py: screenshots
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]} from apt"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# Debian starts a prometheus service on :9090 after install; the tests start their own.

PY=${PYTHON:-python3}
"$PY" - <<'PYCHECK'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: Python 3.11+ is needed, this is {sys.version.split()[0]}; set PYTHON=python3.11")
PYCHECK
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[local,dev]'
echo "setup: done (.venv ready; run 'make demo' or 'make test')"
