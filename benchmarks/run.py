"""Run every benchmark in turn (``make bench``); each prints its own results.

    .venv/bin/python -m benchmarks.run [produce streaming training serving]

Results go into docs/benchmarks.md by hand, with the command and the machine line
each benchmark prints. Run them on a quiet machine: they measure a baseline in the
same run, so the ratios stay comparable, but absolute figures move with load.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

BENCHMARKS = ("produce", "aggregates", "validate", "reader", "streaming", "training", "serving")


def main(names: list[str]) -> int:
    failed = []
    for name in names or list(BENCHMARKS):
        module = f"benchmarks.{name}"
        if importlib.util.find_spec(module) is None:
            print(f"== {module}: not present, skipped")
            continue
        print(f"== {module}", flush=True)
        if subprocess.call([sys.executable, "-m", module]) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
