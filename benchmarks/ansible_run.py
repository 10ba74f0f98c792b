"""Table 5 — Ansible: wall time of ``ansible-playbook -i inventory/lab site.yml`` on the 3-node lab.

First run, then the idempotent re-run, exactly as a user types it (from the checkout, with the
collection path the Makefile sets). The lab (tests/lab/lab.py) is brought up first when it is down, and
taken down at the end only in that case; a lab that was already up is used as it is, and the table says
that its "first" run may then find the nodes already configured. A run that fails is reported as a failure,
with the task that failed; no time is given for it as if it had succeeded.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import COLLECTIONS, PYTHON, REPO, Table, log

LAB = [PYTHON, str(REPO / "tests" / "lab" / "lab.py")]
INVENTORY = "inventory/lab"
PLAYBOOK = "site.yml"
GOAL_RERUN_SECONDS = 60.0
RUN_TIMEOUT = 1500.0
TASK_TIME_RE = re.compile(r"^(?P<name>.*?) -+ *(?P<seconds>\d+\.\d+)s$")
RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    # Per-task times at the end of the output (TASKS RECAP): where a run's time goes.
    env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    return env


def ensure_collection_link() -> None:
    link = COLLECTIONS / "ansible_collections" / "baremetal" / "l2lb"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("../../../..", link)


def lab_status() -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([*LAB, "status", "--json"], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = {}
    return proc.returncode, data


def playbook(log_file: Path) -> dict[str, Any]:
    argv = [str(Path(PYTHON).parent / "ansible-playbook"), "-i", INVENTORY, PLAYBOOK]
    start = time.monotonic()
    with open(log_file, "w") as out:
        try:
            proc = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
                env=ansible_env(),
                timeout=RUN_TIMEOUT,
            )
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.monotonic() - start
    return {"code": code, "seconds": seconds, **parse_log(log_file.read_text(errors="replace"))}


def parse_log(text: str) -> dict[str, Any]:
    """The PLAY RECAP per host, the failure lines, the first task that failed, and the tail of the output."""
    recap = {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")} for m in RECAP_RE.finditer(text)
    }
    failures = [line.strip() for line in text.splitlines() if line.startswith(("fatal:", "failed:", "ERROR!"))]
    failed_task, task = "", ""
    for line in text.splitlines():
        if line.startswith("TASK ["):
            task = line[6:].split("]", 1)[0]
        elif line.startswith(("fatal:", "failed:")):
            failed_task = task
            break
    slowest: list[tuple[str, float]] = []
    if "TASKS RECAP" in text:
        for line in text.split("TASKS RECAP", 1)[1].splitlines():
            match = TASK_TIME_RE.match(line.strip())
            if match:
                slowest.append((match["name"], float(match["seconds"])))
    return {
        "recap": recap,
        "slowest": sorted(slowest, key=lambda t: -t[1]),
        "failures": failures,
        "failed_task": failed_task,
        "tail": "\n".join(text.splitlines()[-25:]),
    }


def describe(result: dict[str, Any]) -> str:
    totals = {k: sum(h[k] for h in result["recap"].values()) for k in ("ok", "changed", "unreachable", "failed")}
    return ", ".join(f"{k}={v}" for k, v in totals.items()) if result["recap"] else "no PLAY RECAP"


def run(size_name: str, workdir: Path) -> Table:
    table = Table(
        key="ansible",
        title="5. Ansible: wall time of `ansible-playbook -i inventory/lab site.yml` on the 3-node lab",
        columns=["run", "wall time s", "exit code", "recap (all hosts)", "idempotent"],
        goal=f"re-run <= {GOAL_RERUN_SECONDS:.0f} s",
    )
    if os.geteuid() != 0:
        table.verdict = "not measured: the lab needs root"
        return table
    ensure_collection_link()
    status, data = lab_status()
    foreign = [p for p in data.get("problems", []) if "a lab is up with state dir" in p]
    if foreign:  # one lab per machine (fixed bridge name): another checkout is using it right now
        table.verdict = f"not measured: the lab is in use by another checkout ({foreign[0]})"
        return table
    brought_up = False
    results: list[tuple[str, dict[str, Any]]] = []
    try:
        if status != 0:
            log("ansible: bringing the lab up (tests/lab/lab.py up)")
            start = time.monotonic()
            up = subprocess.run([*LAB, "up"], capture_output=True, text=True, timeout=900, cwd=str(REPO))
            if up.returncode != 0:
                table.verdict = f"not measured: `lab.py up` failed (exit {up.returncode})"
                table.notes.append("lab.py up output (tail):\n\n```\n" + (up.stdout + up.stderr)[-3000:] + "\n```")
                # `up` takes down what it started when it fails; nothing of ours is left to remove.
                return table
            brought_up = True
            table.notes.append(f"The lab was down; `lab.py up` took {time.monotonic() - start:.0f} s (not counted).")
        else:
            table.notes.append(
                "The lab was already up and was used as it was: its nodes may already have been configured by an "
                "earlier site.yml, so the first run below is not necessarily a first run on fresh nodes "
                "(run `make lab-down` before `make bench` for one)."
            )
        for label in ("first run", "re-run"):
            log(f"ansible: site.yml {label}")
            result = playbook(workdir / f"{label.replace(' ', '-')}.log")
            results.append((label, result))
            log(f"ansible: {label}: exit {result['code']} in {result['seconds']:.0f} s ({describe(result)})")
            if result["code"] != 0:
                break
    finally:
        if brought_up:
            log("ansible: taking the lab down (we brought it up)")
            subprocess.run([*LAB, "down"], capture_output=True, text=True, timeout=300, cwd=str(REPO))
    for label, result in results:
        ok = result["code"] == 0
        changed = sum(h["changed"] for h in result["recap"].values())
        table.add(
            label,
            f"{result['seconds']:.1f}" if ok else f"({result['seconds']:.0f} s until it failed)",
            "timeout" if result["code"] is None else result["code"],
            describe(result),
            ("yes (changed=0)" if changed == 0 else f"no (changed={changed})") if label == "re-run" and ok else "",
        )
        if result["slowest"]:
            top = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result["slowest"][:6])
            table.notes.append(f"{label}, slowest tasks (ansible.posix.profile_tasks): {top}.")
        if not ok:
            where = f" in task [{result['failed_task']}]" if result["failed_task"] else ""
            table.notes.append(
                f"{label} FAILED{where}: "
                + ("; ".join(result["failures"][:3]) or "see the tail")[:1500]
                + "\n\n```\n"
                + result["tail"][-3000:]
                + "\n```"
            )
    rerun = dict(results).get("re-run")
    if not results or results[0][1]["code"] != 0:
        table.verdict = "site.yml does not succeed yet: no time reported (see the failure below)"
    elif rerun is None or rerun["code"] != 0:
        table.verdict = "the re-run failed: no re-run time reported (see the failure below)"
    else:
        changed = sum(h["changed"] for h in rerun["recap"].values())
        verdict = f"re-run {rerun['seconds']:.0f} s: {'met' if rerun['seconds'] <= GOAL_RERUN_SECONDS else 'missed'}"
        if changed:
            verdict += f" (but not idempotent: changed={changed})"
        table.verdict = verdict
    return table
