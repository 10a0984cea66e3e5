"""Data-parallel scaling on this machine: ms per training iteration of `bsde solve --nproc K` for K processes.

    python benchmarks/scaling.py --out results/scaling.md      # 100-d HJB, K = 1, 2, batches 64 and 1024

Each case is one `bsde solve hjb --nproc K --threads T --json` (a fresh torchrun job), once on plain
paths (`solver.measure=plain`) and once steered from the first iteration (`measure=controlled,
control_from=0`, where batch norm needs the global batch at every one of the N steering steps). The
time per iteration is read off the history between the first and the last validation point (start-up
and the first one's warm-up excluded); the last column checks that K processes trained the same as one
(the largest relative difference of the validation losses).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from bsde.runtime import available_cores, cpu_model

MEASURES = {"plain": {"solver.measure": "plain"},
            "steered": {"solver.measure": "controlled", "solver.control_from": 0}}


def run_case(processes: int, batch: int, measure: str, iterations: int, dim: int, threads: int | None) -> dict:
    """One solve; its ms per iteration, wall time and history."""
    settings = {"equation.dim": dim, "solver.batch_size": batch, "solver.iterations": iterations,
                "solver.log_every": iterations // 4, **MEASURES[measure]}
    command = [sys.executable, "-m", "bsde.cli", "solve", "hjb", "--json", "--quiet", "--no-reference",
               "--device", "cpu", "--nproc", str(processes), *(["--threads", str(threads)] if threads else [])]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "OMP_NUM_THREADS")}
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"case K={processes} B={batch} {measure} failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    first, last = result["history"][1], result["history"][-1]
    per_iteration = (last["elapsed_s"] - first["elapsed_s"]) / (last["iteration"] - first["iteration"])
    return {"processes": processes, "batch": batch, "measure": measure, "ms": 1000 * per_iteration,
            "wall_s": wall, "threads": result["threads"], "history": result["history"],
            "command": " ".join(["bsde", *command[3:]])}


def table(cases: list[dict]) -> list[str]:
    lines = ["| paths | batch | processes x threads | ms / iteration | speed-up | wall (start-up incl.) | "
             "largest loss difference vs 1 process |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        alone = next(c for c in cases if c["processes"] == 1 and c["batch"] == case["batch"]
                     and c["measure"] == case["measure"])
        gap = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(alone["history"], case["history"]))
        lines.append(f"| {case['measure']} | {case['batch']} | {case['processes']} x {case['threads']} | "
                     f"{case['ms']:.1f} | {alone['ms'] / case['ms']:.2f}x | {case['wall_s']:.1f} s | {gap:.1e} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2", help="comma-separated K")
    parser.add_argument("--batches", default="64,1024", help="comma-separated global batch sizes")
    parser.add_argument("--measures", default="plain,steered")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per process (0: the cores shared out; on a busy machine two threads of one "
                             "process wait on each other far more than two processes do)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    cases = []
    for measure in args.measures.split(","):
        for batch in map(int, args.batches.split(",")):
            for processes in map(int, args.processes.split(",")):
                cases.append(run_case(processes, batch, measure, args.iterations, args.dim, args.threads or None))
                print(f"{measure} B={batch} K={processes}: {cases[-1]['ms']:.1f} ms / iteration", file=sys.stderr,
                      flush=True)
    command = " ".join(["python", "benchmarks/scaling.py", *sys.argv[1:]])
    report = [
        "# Data-parallel scaling (`bsde solve --nproc K`)", "",
        f"{args.dim}-d HJB, float64, {args.iterations} iterations per case, gloo on the CPU; made by `{command}` "
        f"on {datetime.now(timezone.utc):%Y-%m-%d}.", "",
        f"Machine: {cpu_model()}, {available_cores()} cores available, {platform.platform()}, "
        f"torch {torch.__version__}. Load average (1 min) {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} "
        "at the end: where it exceeds the cores, other work shared the CPU and every number is slower and noisier "
        "than on an idle machine.", "", *table(cases), "",
        "Each case: " + cases[0]["command"].replace(f"--nproc {cases[0]['processes']}", "--nproc K") + " (with the "
        "batch and measure of its row).",
    ]
    text = "\n".join(report) + "\n"
    if args.out is not None:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"command": command, "cases": [{k: v for k, v in c.items() if k != "history"} for c in cases]}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
