"""What the benchmarks say of the machine and the code they ran on (one function for all of them)."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine(**versions: str) -> dict[str, str]:
    """code (the commit, and whether mauto/ has uncommitted changes), platform, cpu, cores, python, then the
    `versions` given (library versions, the load average)."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "mauto"], capture_output=True,
                               text=True, check=True).stdout.splitlines()
        code = commit + (f" + {len(dirty)} uncommitted change(s) under mauto/" if dirty else " (mauto/ clean)")
    except (OSError, subprocess.CalledProcessError):
        code = "unknown (not a git checkout)"
    return {"code": code, "platform": platform.platform(), "cpu": cpu,
            "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
            "python": f"{platform.python_implementation()} {platform.python_version()}", **versions}
