"""Peak-memory probes shared by the benchmarks: one RTB step in a fresh process per cell."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable, Iterable


def rss_growth_mb(step: Callable[[], object]) -> float:
    """Peak resident memory growth (MB) while `step()` runs in this process."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def print_memory_table(script: str, steps: Iterable[int], batch: int) -> None:
    """Run ``script --probe T CHUNK`` in a fresh process per cell (it prints {"mb": ...})
    and print a markdown table: one row per chain length T, one pass against chunks of 5."""
    print(f"## memory: peak RSS growth of one RTB step (batch {batch}, exact gradient through "
          "all T steps), fresh process each")
    print("| T | one pass (MB) | chunks of 5 steps (MB) |\n|---|---|---|")
    for num_steps in steps:
        cells = []
        for chunk in ("none", "5"):
            out = subprocess.run([sys.executable, script, "--probe", str(num_steps), chunk],
                                 capture_output=True, text=True, check=True).stdout
            cells.append(f"{json.loads(out.strip().splitlines()[-1])['mb']:.0f}")
        print(f"| {num_steps} | {cells[0]} | {cells[1]} |")
