#!/usr/bin/env python3
"""Time the reference TensorFlow implementation (github.com/frankhan91/DeepBSDE) beside `bsde bench`.

Runs the peer's own ``main.py`` on its 100-d HJB, Allen-Cahn and default-risk configs, each in a
fresh process from a scratch folder (so its ``logs/`` never lands in the checkout), and prints
the process wall time and the milliseconds per iteration after the graph trace (read from the
peer's training-history CSV: elapsed time between its first and last validation points; the peer
logs whole seconds, so keep the full iteration counts for a ratio good to a few %). With
``--bench results/bench.json`` it also prints ``peer / ours`` for the same configurations.

Needs a checkout of the peer and a Python with TensorFlow and its other requirements (absl-py,
munch); nothing of the peer is copied here. Standard library only. Example::

    python benchmarks/peer_deepbsde.py ~/src/DeepBSDE --python ~/tf-env/bin/python --cpus 0,1 \\
        --bench results/bench.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: peer config -> the matching case of `bsde bench`'s speed table
CONFIGS = {
    "hjb_lq_d100.json": "hjb 100-d float64",
    "allencahn_d100.json": "allen_cahn 100-d float64",
    "pricing_default_risk_d100.json": "default_risk 100-d float64",
}


def ms_per_iteration(history: Path) -> tuple[int, float | None]:
    """(iterations, ms per iteration between the first and last logged points) from the peer's CSV."""
    with history.open() as handle:
        rows = [row for row in csv.DictReader(handle)]
    steps = [int(float(r["step"])) for r in rows]
    elapsed = [float(r["elapsed_time"]) for r in rows]
    if len(rows) < 2 or steps[-1] == steps[0]:
        return (steps[-1] if steps else 0), None
    return steps[-1], 1e3 * (elapsed[-1] - elapsed[0]) / (steps[-1] - steps[0])


def run(checkout: Path, config: str, python: str, cpus: str | None, iterations: int | None,
        scratch: Path) -> tuple[float, int, float | None, int]:
    """Run the peer on one config; returns (wall s, iterations, ms/it after trace, exit status)."""
    source = json.loads((checkout / "configs" / config).read_text())
    if iterations is not None:
        source["net_config"]["num_iterations"] = iterations
    config_path = scratch / config
    config_path.write_text(json.dumps(source, indent=2))
    name = config.removesuffix(".json")
    command = [python, str(checkout / "main.py"), f"--config_path={config_path}", f"--exp_name={name}"]
    if cpus:
        if shutil.which("taskset") is None:
            sys.exit("--cpus needs taskset (util-linux)")
        command = ["taskset", "-c", cpus, *command]
    start = time.perf_counter()
    status = subprocess.run(command, cwd=scratch).returncode
    wall = time.perf_counter() - start
    history = scratch / "logs" / f"{name}_training_history.csv"
    if status != 0 or not history.exists():
        return wall, 0, None, status or 1
    done, per_iteration = ms_per_iteration(history)
    return wall, done, per_iteration, 0


def ours(bench_json: Path | None) -> dict[str, float]:
    """ms per iteration of `bsde bench`'s speed cases, by case name."""
    if bench_json is None:
        return {}
    data = json.loads(bench_json.read_text())
    return {row["case"]: 1e3 * row["timing"]["median_s"] for row in data["speed"]}


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="local checkout of github.com/frankhan91/DeepBSDE")
    parser.add_argument("--python", default=sys.executable, help="interpreter with tensorflow (default: this one)")
    parser.add_argument("--cpus", help="pin the peer to these CPUs with taskset, e.g. 0,1 for a 2-core comparison")
    parser.add_argument("--iterations", type=int, help="override num_iterations (default: the config's own)")
    parser.add_argument("--bench", type=Path, help="a bench.json of `bsde bench` to compare against")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), metavar="CONFIG",
                        help=f"which peer configs (default: all of {', '.join(CONFIGS)})")
    args = parser.parse_args()
    if not (args.checkout / "main.py").is_file():
        sys.exit(f"{args.checkout}: no main.py; expected a checkout of github.com/frankhan91/DeepBSDE")
    mine = ours(args.bench)
    rows = []
    with tempfile.TemporaryDirectory(prefix="peer-deepbsde-") as folder:
        for config in args.configs:
            print(f"+ {config}", file=sys.stderr, flush=True)
            wall, done, per_iteration, status = run(args.checkout, config, args.python, args.cpus, args.iterations,
                                                    Path(folder))
            rows.append((config, wall, done, per_iteration, mine.get(CONFIGS[config]), status))
    print(f"{'config':34} {'wall s':>8} {'iters':>6} {'peer ms/it':>11} {'ours ms/it':>11} {'peer/ours':>10}")
    for config, wall, done, per_iteration, our_ms, status in rows:
        if status:
            print(f"{config:34} {wall:8.1f}  failed (exit {status})")
            continue
        ratio = per_iteration / our_ms if per_iteration and our_ms else None
        print(f"{config:34} {wall:8.1f} {done:6d} {_fmt(per_iteration, 11, 1)} {_fmt(our_ms, 11, 1)} "
              f"{_fmt(ratio, 10, 2)}")
    print(f"threads: {os.environ.get('TF_NUM_INTRAOP_THREADS', 'TensorFlow default')}; cpus: {args.cpus or 'all'}")
    sys.exit(1 if any(row[-1] for row in rows) else 0)


if __name__ == "__main__":
    main()
