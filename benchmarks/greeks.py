"""Greeks and u over a region, measured against independent references (issue 11, section 4).

    python benchmarks/greeks.py --out results                        # the four cases, seed 0
    python benchmarks/greeks.py --cases call_region --seeds 0,1,2 --out /tmp/greeks
    python benchmarks/greeks.py --report results/greeks.json --out results   # tables and plots again, no solves
    python benchmarks/greeks.py --report a/greeks.json b/greeks.json --out results   # cases run apart, one report

Writes OUT/greeks.json (every number), OUT/greeks.md (the tables) and the plots OUT/greeks_call.png (u, delta
and gamma of the one-asset call over [80, 120] against Black-Scholes), OUT/greeks_hjb.png (u along the
diagonal of [-1, 1]^10 against the radial solve) and OUT/greeks_max_call.png (each asset's delta against the
semi-analytic value). The cases and their tolerances are in bsde/greeks_cases.py; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bsde.compare import environment
from bsde.greeks_cases import CALL_SPOTS, CASES, LIMITS, run_case
from bsde.io import ensure_folder, write_bytes_atomic, write_json_atomic, write_text_atomic
from bsde.reference.greeks import black_scholes_greeks
from bsde.reference.semi_analytic import black_scholes_call

COMMAND = "python benchmarks/greeks.py --out results"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def save_figure(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    write_bytes_atomic(path, buffer.getvalue())


def call_curves(result, problem) -> dict:
    """u, delta and gamma of the region solve and of Black-Scholes on a grid of the box."""
    eq = problem.equation
    args = (eq.strike, eq.rate, eq.dividends[0], eq.vols[0], eq.total_time)
    spots = np.linspace(80.0, 120.0, 81)
    exact = np.array([[black_scholes_call(s, *args), *black_scholes_greeks(s, *args)] for s in spots])
    points = spots[:, None]
    return {"spot": spots.tolist(), "u": result.u(points).tolist(), "delta": result.grad(points)[:, 0].tolist(),
            "gamma": result.solution.hessian(points)[:, 0, 0].tolist(), "u_ref": exact[:, 0].tolist(),
            "delta_ref": exact[:, 1].tolist(), "gamma_ref": exact[:, 2].tolist()}


def plot_call(curves: dict, path: Path) -> None:
    figure = Figure(figsize=(10.0, 3.4))
    axes = figure.subplots(1, 3)
    for ax, key, label in zip(axes, ("u", "delta", "gamma"), ("u(0, S)", "delta", "gamma")):
        ax.plot(curves["spot"], curves[f"{key}_ref"], color="grey", linewidth=3, alpha=0.5, label="Black-Scholes")
        ax.plot(curves["spot"], curves[key], color="C0", linewidth=1.2, label="deep BSDE over [80, 120]")
        for spot in CALL_SPOTS:
            ax.axvline(spot, color="C3", linewidth=0.6, linestyle=":")
        ax.set_xlabel("S0")
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    figure.suptitle("one-asset call (K 100, vol 0.2, r 0.05, T 1), one training run over the box", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)


def plot_max_call(cases: dict, path: Path) -> None:
    figure = Figure(figsize=(7.0, 3.4))
    ax = figure.subplots()
    for name, colour in (("max_call_10", "C0"), ("max_call_100", "C1")):
        if name not in cases:
            continue
        rows = cases[name]["rows"]
        errors = [100 * (r["delta"] - r["delta_ref"]) / r["delta_ref"] for r in rows]
        ax.plot([r["asset"] for r in rows], errors, "o", markersize=3, color=colour,
                label=f"d = {len(rows)} (mean {100 * cases[name]['extra']['mean_delta_rel']:.2f} % off)")
    ax.axhspan(-2, 2, color="grey", alpha=0.15, label="±2 %")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("asset")
    ax.set_ylabel("delta - semi-analytic (%)")
    ax.set_title("max call: deltas of one point solve (refit) against the differentiated integral", fontsize=10)
    ax.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.3g} %"


def _with_se(row: dict, name: str, digits: int) -> str:
    """'value ± standard error' (the refit's jackknife), or the value alone in a report made before it existed."""
    se = row.get(f"{name}_se")
    return f"{row[name]:.{digits}g}" + ("" if se is None else f" ± {se:.1g}")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def markdown(data: dict) -> str:
    env, cases = data["environment"], data["cases"]
    lines = ["# Greeks and u over a region, against independent references", "",
             f"Made by `{'`, `'.join(data.get('commands', [data['command']]))}` on {env['device_name']} ({env['device']}, {env['cores']} cores, "
             f"{env['available_cores']} available to this process), torch {env['torch']}, "
             f"{data.get('threads') or 'all available'} threads, {env['date']}; seed(s) "
             f"{', '.join(map(str, data['seeds']))}. The cases and tolerances are in `bsde/greeks_cases.py`; "
             "`pytest -m slow tests/test_greeks_accuracy.py` asserts them.", "",
             "| case | target | worst | limit | met |", "|---|---|---|---|---|"]
    for name, runs in cases.items():
        for run in runs:
            for t in run["targets"]:
                lines.append(f"| {name} (seed {run['seed']}) | {t['name']} | {_pct(t['worst'])} | {_pct(t['limit'])} "
                             f"| {'yes' if t['ok'] else '**no**'} |")
    for name, runs in cases.items():
        run = runs[0]
        lines += ["", f"## {name}", "",
                  f"`{run['problem']}` with {', '.join(f'{k}={v}' for k, v in run['overrides'].items())}; "
                  f"seed {run['seed']}, solve {run['wall_s']:.0f} s (training {run['train_s']:.0f} s) on "
                  f"{run['device']}, {run['threads']} threads.", ""]
        if name.startswith("max_call"):
            extra = run["extra"]
            lines.append(f"Mean delta {extra['mean_delta']:.6g} against {extra['mean_delta_ref']:.6g} "
                         f"({_pct(extra['mean_delta_rel'])}); the largest single error {_pct(extra['max_delta_rel'])}. "
                         f"y0 {extra['y0']:.6g}, semi-analytic {extra['value_ref']:.6g}. Gamma: {extra['gamma_source']}.")
            shown = run["rows"] if len(run["rows"]) <= 10 else run["rows"][:5] + run["rows"][-2:]
            lines += [""] + _table(["asset", "delta", "semi-analytic", "error", "gamma_ii", "semi-analytic", "error"],
                                   [[str(r["asset"]), f"{r['delta']:.5g}", f"{r['delta_ref']:.5g}", _pct(r["delta_rel"]),
                                     f"{r['gamma']:.4g}", f"{r['gamma_ref']:.4g}", _pct(r["gamma_rel"])]
                                    for r in shown])
        elif name == "call_region":
            lines += _table(["S0", "u", "Black-Scholes", "error", "delta", "closed form", "error", "gamma",
                             "closed form", "error"],
                            [[f"{r['spot']:g}", _with_se(r, "u", 5), f"{r['u_ref']:.5g}", _pct(r["u_rel"]),
                              _with_se(r, "delta", 5), f"{r['delta_ref']:.5g}", _pct(r["delta_rel"]),
                              _with_se(r, "gamma", 5), f"{r['gamma_ref']:.5g}", _pct(r["gamma_rel"])]
                             for r in run["rows"]])
            ratios = [abs(r["gamma"] - r["gamma_ref"]) / r["gamma_se"] for one in runs for r in one["rows"]
                      if "gamma_se" in r]
            if ratios:
                lines += ["", "± is the standard error from the refit's jackknife (`Solution.standard_errors`: the "
                              "last layer refitted without each of 8 groups of the refit's paths). Over "
                              f"{len(runs)} seed(s) x {len(CALL_SPOTS)} spots, |gamma error| / standard error: mean "
                              f"{np.mean(ratios):.2f}, largest {max(ratios):.2f}; {sum(q <= 2 for q in ratios)} of "
                              f"{len(ratios)} within 2 standard errors."]
            lines += ["", "![one-asset call over the box](greeks_call.png)"]
        elif name == "hjb_region":
            lines += _table(["point", "|x|", "u", "radial", "error"],
                            [[r["where"], f"{r['radius']:.3g}",
                              _with_se(r, "u", 5), f"{r['u_ref']:.5g}",
                              _pct(r["u_rel"])] for r in run["rows"] + run["extra"]["random_points"]])
            worst_grad = max(r["grad_rel"] for r in run["extra"]["random_points"])
            lines += ["", f"At the random points the gradient (delta) is off by up to {_pct(worst_grad)} "
                          "(|grad u - radial| / |radial|; no target).", "",
                      "![u along the diagonal of the box](greeks_hjb.png)"]
        if len(runs) > 1:
            lines += ["", "Other seeds: " + "; ".join(
                f"seed {r['seed']}: " + ", ".join(f"{t['name']} {_pct(t['worst'])}" for t in r["targets"])
                for r in runs[1:])]
    if "max_call_10" in cases or "max_call_100" in cases:
        lines += ["", "![max-call deltas](greeks_max_call.png)"]
    return "\n".join(lines) + "\n"


def merged(parts: list[dict]) -> dict:
    """One greeks.json from several (cases run as separate processes): cases and commands joined."""
    data = {**parts[0], "cases": {}, "commands": []}
    for part in parts:
        data["commands"] += part.get("commands", [part["command"]])
        for name, runs in part["cases"].items():
            data["cases"].setdefault(name, []).extend(runs)
        data["call_curves"] = data.get("call_curves") or part.get("call_curves")
    data["seeds"] = sorted({run["seed"] for runs in data["cases"].values() for run in runs})
    return data


def report(data: dict, out: Path) -> None:
    write_json_atomic(out / "greeks.json", data)
    write_text_atomic(out / "greeks.md", markdown(data))
    if data.get("call_curves"):
        plot_call(data["call_curves"], out / "greeks_call.png")
    if any(name.startswith("max_call") for name in data["cases"]):
        plot_max_call({k: v[0] for k, v in data["cases"].items()}, out / "greeks_max_call.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--report", type=Path, nargs="+", default=None, metavar="JSON",
                        help="rebuild the tables and plots from greeks.json files (their cases merged), no solves")
    args = parser.parse_args()
    out = ensure_folder(args.out)
    if args.report is not None:
        report(merged([json.loads(path.read_text()) for path in args.report]), out)
        return
    names, seeds = [n for n in args.cases.split(",") if n], [int(s) for s in args.seeds.split(",") if s]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    command = shlex.join(["python", "benchmarks/greeks.py", *sys.argv[1:]])
    data = {"command": command, "environment": environment(args.device, args.threads, seeds, command),
            "threads": args.threads, "seeds": seeds, "limits": LIMITS, "cases": {}, "call_curves": None}
    for name in names:
        for seed in seeds:
            say(f"{name}, seed {seed}: solving")
            case, result, problem = run_case(name, seed=seed, device=args.device, threads=args.threads,
                                             on_log=lambda e: say(f"  iter {e.iteration} loss {e.loss:.4g}"))
            data["cases"].setdefault(name, []).append(asdict(case))
            say(f"{name}, seed {seed}: " + ", ".join(f"{t['name']} {_pct(t['worst'])} (limit {_pct(t['limit'])})"
                                                     for t in case.targets))
            if seed == seeds[0] and name == "call_region":
                data["call_curves"] = call_curves(result, problem)
            if seed == seeds[0] and name == "hjb_region":
                from bsde.region_plot import diagonal_checks, plot_region

                plot_region(result.solution, problem, diagonal_checks(result.solution, problem), out / "greeks_hjb.png")
            report(data, out)  # after every solve: a long run leaves its tables so far
    say(f"wrote {out / 'greeks.md'}")


if __name__ == "__main__":
    main()
