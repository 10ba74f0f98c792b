"""Sampling profiles of our processes with py-spy (pinned in requirements.txt), summarised for a table's notes.

``py-spy record --gil`` samples only the thread holding the GIL, i.e. where the Python CPU time goes; the
summary lists the functions of the project (agent, benchmarks) with the share of samples in which
they were on the stack (inclusive), heaviest first.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

from benchmarks.common import PYTHON

OUR_CODE = ("l2lb_agent/", "benchmarks/")


def py_spy() -> str | None:
    local = Path(PYTHON).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Profile:
    """``py-spy record`` of one process for ``seconds``, started now; ``summary()`` waits for it."""

    def __init__(self, pid: int, seconds: float, output: Path, *, rate: int = 100) -> None:
        self.output = output
        self.expected = int(seconds) * rate
        self.proc: subprocess.Popen[bytes] | None = None
        tool = py_spy()
        if tool is None:
            self.error = "py-spy not installed"
            return
        self.error = ""
        argv = [tool, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate)]
        argv += ["--gil", "--format", "raw", "--output", str(output)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def summary(self, top: int = 6, timeout: float = 60.0) -> str:
        if self.proc is None:
            return f"no profile: {self.error}"
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.output.exists():
            return f"no profile: py-spy exited {self.proc.returncode}: {err.decode(errors='replace').strip()[-300:]}"
        return summarize(self.output.read_text(errors="replace"), top, self.expected)


def summarize(raw: str, top: int = 6, expected: int = 0) -> str:
    """'N samples with the GIL: 91% SpeakerRuntime._recompute (l2lb_agent/speaker/runtime.py), ...'."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        seen = set()
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            path = where.rsplit(":", 1)[0]
            if not path.startswith(OUR_CODE):
                continue
            key = f"{name} ({path})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += samples
    if not total:
        return "no samples"
    heaviest = ", ".join(f"{n / total:.0%} {key}" for key, n in inclusive.most_common(top))
    held = f" (the GIL was held in {total / expected:.0%} of the time)" if expected else ""
    return f"{total} samples with the GIL held{held}; of those: {heaviest}"
