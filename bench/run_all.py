"""Run every benchmark in bench/ in turn; each prints its own ratios against a baseline from the same run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failures = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        failures += subprocess.run([sys.executable, str(script)], check=False).returncode != 0  # noqa: S603
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
