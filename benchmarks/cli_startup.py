"""How long `softprompt --help` (and `softprompt COMMAND --help`) takes: wall and CPU time over many runs.

The help is built without importing torch or any extra (tests/test_cli.py holds that), so it is a
Python start-up plus argparse; this measures it from outside, as a user's shell sees it. CPU time is
printed beside wall time because it moves less with the machine's load.

    python benchmarks/cli_startup.py --runs 50
    python benchmarks/cli_startup.py --runs 50 --source /path/to/another/checkout/src   # compare a version
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMAND_LINES = (["--help"], ["train", "--help"], ["serve", "--help"])


def measure(argv: list[str], runs: int, source: str | None) -> tuple[list[float], list[float]]:
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = source
    script = "import sys; from softprompt.cli import main; sys.exit(main())"
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", script, *argv], stdout=subprocess.DEVNULL, env=env, check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per command line (default: 30)")
    parser.add_argument("--source", default=None, help="a src/ folder to measure instead of the installed package")
    args = parser.parse_args()
    where = args.source or str(Path(__file__).resolve().parents[1] / "src")
    print(f"softprompt from {where}; load average before: {os.getloadavg()[0]:.2f}")
    for argv in COMMAND_LINES:
        walls, cpus = measure(argv, args.runs, args.source)
        print(
            f"softprompt {' '.join(argv):<14} wall median {statistics.median(walls):.3f}s (min {min(walls):.3f}s), "
            f"CPU median {statistics.median(cpus):.3f}s over {args.runs} runs"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
