"""`make test` does not depend on the caller's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_exported_stack_settings_do_not_leak_into_tests(tmp_path: Path) -> None:
    # a user's stack, exported in their shell, pointing at services that do not exist
    env = {**os.environ, "SEGSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "SEGSTREAM_REDIS_URL": "redis://127.0.0.1:1/0",
           "SEGSTREAM_DATA_DIR": str(tmp_path / "elsewhere")}
    test = "tests/sources/test_stack.py::test_a_dead_pid_in_the_state_file_is_restarted"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          test], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert not (tmp_path / "elsewhere").exists()
