"""CLI start-up time: how long ``udtc --version``, ``udtc classify --help`` and ``import udtc`` take.

Each command runs in a fresh ``python`` subprocess (as a user's shell starts it), ``--runs`` times
(default 5); the table reports the median and the range in wall seconds, and the median CPU seconds
(user + system of the child: what other jobs on a shared machine do not inflate). In the same run, for comparison,
``import udtc.classifier`` (what every ``import udtc`` loaded before the package became lazy:
torch + transformers) and ``python -c pass`` (the interpreter alone).

    python -m benchmarks.startup              # 5 runs each -> benchmarks/results/startup.{json,md}
    python -m benchmarks.startup --quick      # 2 runs each (smoke test) -> startup_quick.*
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

from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "udtc --version": ["-m", "udtc.cli", "--version"],
    "udtc classify --help": ["-m", "udtc.cli", "classify", "--help"],
    "python -c 'import udtc'": ["-c", "import udtc"],
    "python -c 'import udtc.classifier' (eager, for comparison)": ["-c", "import udtc.classifier"],
    "python -c pass (interpreter alone)": ["-c", "pass"],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(args: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system; what other jobs on the machine do not inflate) per run."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    seconds, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), _children_cpu()
        subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - start_cpu)
    return seconds, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 runs per command")
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    results = {}
    for name, command in COMMANDS.items():
        seconds, cpu = time_command(command, runs)
        results[name] = {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
                         "max_s": round(max(seconds), 3), "median_cpu_s": round(statistics.median(cpu), 3),
                         "runs": runs}
        print(f"{name}: median {results[name]['median_s']:.2f} s ({runs} runs)", flush=True)
    eager = results["python -c 'import udtc.classifier' (eager, for comparison)"]["median_s"]
    lines = ["| command | median s | min-max s | median CPU s | runs |", "|---|---|---|---|---|"]
    lines += [f"| `{name}` | {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} | {r['median_cpu_s']:.2f} | "
              f"{r['runs']} |" for name, r in results.items()]
    bare = results["python -c pass (interpreter alone)"]["median_s"]
    lines.append(f"\n`udtc --version` takes {results['udtc --version']['median_s'] / eager:.2f}x the time of the eager "
                 f"import and {results['udtc --version']['median_s'] - bare:.2f} s more than the bare interpreter "
                 f"(same run; load average {os.getloadavg()[0]:.1f} at the end).")
    table = "\n".join(lines)
    print(table)
    write_results("startup_quick" if args.quick else "startup", {"commands": results}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
