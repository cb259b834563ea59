"""How long a sweep takes to exit after SIGTERM during retraining, and what it waits on meanwhile.

Runs ``experiments/sweep.py`` in a subprocess (in a session of its own, on a local Ray) and sends it SIGTERM
``--delay`` seconds after its first retraining task runs (it printed that retraining starts and a process titled
``ray::retrain_task`` exists). Then it watches: when the sweep printed that the signal arrived and its resume
command, when it exited and with what code; every 0.25 s which processes it still has (its descendants, by role:
Ray titles a worker process ``ray::Class.method`` or ``ray::task_name``) and what the driver waits on in the kernel
(``/proc/PID/wchan``); with ``py-spy`` on PATH, the driver's native stacks at ``--dumps`` seconds after the signal;
and after the exit, which processes of its session outlive it, and for how long. Linux only (``/proc``).

A GPU sweep once took more than 32 s to exit after SIGTERM during retraining where a CPU sweep takes ~3-4 s; this
tells the phases apart (interrupt handling, MLflow, Ray's shutdown, processes that are slow to die).

    python benchmarks/exit_after_sigterm.py                    # tiny sweep on CPU (about a minute)
    python benchmarks/exit_after_sigterm.py --config experiments/configs/gpu.yaml --sweep-args "--epochs 1"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dasvit.arglists import NumberList

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
RETRAINING = re.compile(r"^retraining \d+ genotype")
RETRAIN_TASK = "retrain_task"  # the Ray task that retrains one genotype: its processes are titled ray::retrain_task
INTERRUPTED = re.compile(r"SIGTERM received")
RESUME = re.compile(r"^resume it with:")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "experiments" / "configs" / "tiny.yaml"))
    parser.add_argument("--sweep-args", default="--retrain-epochs 200", help="more sweep.py flags, one string")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds between a retraining task's start and SIGTERM")
    parser.add_argument("--start-timeout", type=float, default=600.0, help="seconds to wait for retraining")
    parser.add_argument("--watch", type=float, default=90.0, help="seconds to watch the exit before killing it")
    parser.add_argument("--dumps", type=NumberList(float, minimum=0, empty_ok=True), default="2,10,30",
                        help="seconds after the signal to dump the driver's stacks")
    parser.add_argument("--tag", default="exit_after_sigterm", help="results file stem")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.delay < 0 or args.watch <= 0:
        parser.error(f"--delay {args.delay} / --watch {args.watch}: need delay >= 0 and watch > 0")
    dumps = sorted(args.dumps)
    if not Path(args.config).is_file():
        parser.error(f"--config {args.config!r}: no such file")

    with tempfile.TemporaryDirectory() as workdir:
        report = probe(args.config, shlex.split(args.sweep_args), Path(workdir), args, dumps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("samples", "stack_dumps", "output")}, indent=2))
    return report


class Output:
    """The sweep's console, line by line, each with the monotonic time it arrived."""

    def __init__(self, stream: Any):
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def first(self, pattern: re.Pattern, after: float = 0.0) -> float | None:
        return next((t for t, line in list(self.lines) if t >= after and pattern.search(line)), None)


def probe(config: str, sweep_args: list[str], workdir: Path, args: argparse.Namespace, dumps: list[float]) -> dict:
    command = [sys.executable, str(ROOT / "experiments" / "sweep.py"), "--config", config, "--workdir", str(workdir),
               "--name", "exit-probe", "--address", "local", *sweep_args]
    driver = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    output = Output(driver.stdout)
    report: dict[str, Any] = {"command": command[1:], "delay_s": args.delay, "py_spy": shutil.which("py-spy")}
    try:
        deadline = time.monotonic() + args.start_timeout
        while not retraining(output, driver.pid) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not retraining(output, driver.pid):
            report["error"] = "the sweep ended or timed out before a retraining task ran"
            return report
        time.sleep(args.delay)
        report["retrain_tasks_at_signal"] = roles(descendants(driver.pid)).get(RETRAIN_TASK, 0)
        signalled = time.monotonic()
        driver.send_signal(signal.SIGTERM)
        report.update(watch(driver, signalled, args.watch, dumps))
        driver.wait(timeout=5)
        output.thread.join(timeout=5)
        since = {"to_interrupt_line_s": output.first(INTERRUPTED, signalled),
                 "to_resume_line_s": output.first(RESUME, signalled)}
        report.update({k: (t - signalled if t is not None else None) for k, t in since.items()})
    finally:
        if driver.poll() is None:  # still alive after the watch: end the whole process group
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        report["returncode"] = driver.returncode
        report["output"] = [line for _, line in output.lines][-40:]
    return report


def retraining(output: Output, pid: int) -> bool:
    return output.first(RETRAINING) is not None and RETRAIN_TASK in roles(descendants(pid))


def watch(driver: subprocess.Popen, signalled: float, limit: float, dumps: list[float]) -> dict[str, Any]:
    """Sample the driver and its descendants until it exits or ``limit`` seconds pass; keep the samples in which
    something changed."""
    samples: list[dict[str, Any]] = []
    stacks: list[dict[str, Any]] = []
    pending_dumps = list(dumps)
    while driver.poll() is None and (now := time.monotonic() - signalled) < limit:
        sample = {"alive": roles(descendants(driver.pid)), "driver": kernel_wait(driver.pid)}
        if not samples or {k: v for k, v in samples[-1].items() if k != "t"} != sample:
            samples.append({"t": round(now, 2), **sample})
        if pending_dumps and now >= pending_dumps[0]:
            pending_dumps.pop(0)
            stacks.append({"t": round(now, 2), "stack": native_stack(driver.pid)})
        time.sleep(0.25)
    exited = time.monotonic() - signalled if driver.poll() is not None else None
    return {"to_exit_s": exited, "samples": samples, "stack_dumps": stacks, **outliving(driver.pid, signalled)}


def outliving(session: int, signalled: float, limit: float = 15.0) -> dict[str, Any]:
    """What of the driver's session is still alive when it exits, and until when (up to ``limit`` s after)."""
    left = roles(session_members(session))
    start = time.monotonic()
    while session_members(session) and time.monotonic() - start < limit:
        time.sleep(0.25)
    remaining = roles(session_members(session))
    return {"left_at_exit": left, "all_gone_s": None if remaining else time.monotonic() - signalled,
            "left_after_s": {"seconds": limit, "roles": remaining} if remaining else None}


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _all_stats() -> dict[int, list[str]]:
    """The ``/proc/PID/stat`` fields (those after the command name) of every process."""
    stats = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if fields is not None:
            stats[int(entry.name)] = fields
    return stats


def descendants(root: int) -> list[int]:
    parents = {pid: int(fields[1]) for pid, fields in _all_stats().items()}
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def session_members(session: int) -> list[int]:
    """Processes of the session the driver leads (it was started in a new one), itself excluded: what would be
    left behind if it exited without stopping them."""
    return [pid for pid, fields in _all_stats().items() if int(fields[3]) == session and pid != session]


def roles(pids: list[int]) -> dict[str, int]:
    """How many processes of each role: a ``ray::`` title's class or task, else the script a Python process runs
    (``raylet``, ``dashboard.py``, ``default_worker.py`` ...); ``(exiting)`` for one whose command line is gone."""
    counts: dict[str, int] = {}
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        words = raw.replace("\0", " ").split()  # a title set by setproctitle may hold the whole line in one field
        if not words:
            role = "(exiting)"
        elif words[0].startswith("ray::"):
            role = words[0].removeprefix("ray::").split(".")[0]
        else:
            role = next((Path(w).name for w in words if w.endswith(".py")), Path(words[0]).name)
        counts[role] = counts.get(role, 0) + 1
    return dict(sorted(counts.items()))


def kernel_wait(pid: int) -> dict[str, Any]:
    fields = _stat(pid)
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip() or None
    except OSError:
        wchan = None
    return {"state": fields[0] if fields else None, "threads": int(fields[17]) if fields else None, "wchan": wchan}


def native_stack(pid: int) -> str:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return "(py-spy not on PATH)"
    done = subprocess.run([py_spy, "dump", "--native", "--pid", str(pid)], check=False, capture_output=True,
                          text=True, timeout=30)
    return (done.stdout + done.stderr)[-6000:]


if __name__ == "__main__":
    main()
