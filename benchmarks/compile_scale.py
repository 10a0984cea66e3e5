"""Per-iteration time of the HJB training step, eager against torch.compile (``solver.compile``), at given d.

    python benchmarks/compile_scale.py --dims 10000 --dtypes float64,float32 --modes eager,compile

Prints one JSON line per case: milliseconds per iteration of the trainer's own loop (plain paths) against the
same run's matmul floor, timed as ``bsde bench`` times its speed table (``bsde.bench.cases.time_training``);
the warm-up seconds include the compilation. Modes: ``eager``, ``compile`` (torch.compile) and
``reduce-overhead`` (torch.compile replayed as CUDA graphs; CUDA only). ``benchmarks/gpu_check.sh`` runs it
on a GPU; on the CPU it threads and keeps freed memory as ``bsde solve`` does.
"""

from __future__ import annotations

import argparse
import json
import time

MODES = {"eager": False, "compile": True, "reduce-overhead": "reduce-overhead"}
DTYPES = ("float64", "float32")


def _dims(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if min(dims) < 1:
        raise argparse.ArgumentTypeError(f"dimensions must be at least 1, got {text!r}")
    return dims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--dims", type=_dims, default=[10000], help="comma-separated dimensions")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help=f"comma-separated: {', '.join(DTYPES)}")
    parser.add_argument("--modes", default="eager,compile", help=f"comma-separated: {', '.join(MODES)}")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the available cores)")
    parser.add_argument("--quick", action="store_true", help="few iterations (a check of the script, not a timing)")
    options = parser.parse_args()
    modes, dtypes = options.modes.split(","), options.dtypes.split(",")
    for flag, given, known in (("--modes", modes, MODES), ("--dtypes", dtypes, DTYPES)):
        unknown = [value for value in given if value not in known]
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)} (choose from {', '.join(known)})")

    from bsde.errors import BSDEError

    try:
        run(options.device, options.threads, options.dims, dtypes, modes, options.quick)
    except BSDEError as exc:  # a device that is not there, a compiler that fails: one line, exit 2
        parser.exit(2, f"compile_scale.py: error: {exc}\n")


def run(device_name: str, threads: int | None, dims: list[int], dtypes: list[str], modes: list[str],
        quick: bool) -> None:
    """One JSON line on stdout per (dim, dtype, mode)."""
    import torch

    from bsde.bench.cases import matmul_floor, network_flops, time_training
    from bsde.problem import load_problem
    from bsde.runtime import keep_freed_memory, resolve_device, set_threads

    device = resolve_device(device_name)
    threads = set_threads(threads)
    keep_freed_memory(device)
    for dim in dims:
        for dtype in dtypes:
            for mode in modes:
                problem = load_problem("hjb", {"equation.dim": dim, "solver.dtype": dtype, "solver.measure": "plain",
                                               "solver.compile": MODES[mode]})
                start = time.perf_counter()
                t = time_training(problem, device, warmup=2 if quick else 5, blocks=3 if quick else 5,
                                  block=1 if quick else 4, floor=matmul_floor(problem, device))
                peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
                print(json.dumps({
                    "dim": dim, "dtype": dtype, "mode": mode, "device": str(device), "threads": threads,
                    "tf32": bool(device.type == "cuda" and dtype == "float32"),
                    "ms_per_iteration": 1e3 * t.timing.median_s, "iqr_ms": 1e3 * t.timing.iqr_s,
                    "floor_ms": 1e3 * t.floor.median_s, "x_floor": t.floor_ratio.median_s,
                    "floor_gflops": network_flops(problem) / t.floor.median_s / 1e9, "warmup_s": t.warmup_s,
                    "cuda_peak_mb": peak, "wall_s": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()
