"""Comparison reports: ``<problem>.json``, ``<problem>.md``, ``<problem>.png`` and the folder's ``README.md``.

Everything is rendered from the JSON mapping of :meth:`bsde.compare.Comparison.to_dict`, so the
index can be rebuilt from the JSON files alone. Plots use matplotlib's Agg canvas directly (no
pyplot, no global backend); every file goes through :mod:`bsde.io`'s atomic writes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bsde.compare import FORMAT
from bsde.io import ensure_folder, write_bytes_atomic, write_json_atomic, write_text_atomic

COLUMNS = ("problem", "dim", "seeds", "y0 mean ± std", "reference ± error", "method", "rel. error",
           "published", "rel. error vs published", "baseline", "wall / solve", "device")
REGENERATE = "bsde compare --all --seeds 3 --out results"


def _num(value: float | None, digits: int = 6) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.3g} %"


def cells(summary: dict[str, Any]) -> list[str]:
    """One table row, formatted, in the order of COLUMNS."""
    bar = summary.get("reference_error_bar")
    ref = _num(summary.get("reference")) + (f" ± {bar:.2g}" if bar is not None else "")
    method = summary.get("reference_method") or "-"
    if summary.get("reference_basis") == "published":
        method = "published (no engine method)"
    baseline = _num(summary.get("baseline"))
    if summary.get("baseline_stderr") is not None:
        baseline += f" ± {summary['baseline_stderr']:.2g}"
    return [
        summary["problem"], str(summary["dim"]), str(summary["seeds"]),
        f"{summary['y0_mean']:.6g} ± {summary['y0_std']:.2g}", ref, method, _pct(summary.get("rel_error")),
        _num(summary.get("published")), _pct(summary.get("rel_error_published")), baseline,
        f"{summary['wall_s_mean']:.3g} s", summary.get("device") or "-",
    ]


def markdown_table(rows: list[list[str]], header: tuple[str, ...] = COLUMNS) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _reference_section(data: dict[str, Any]) -> list[str]:
    ref, published, summary = data["reference"], data["published"], data["summary"]
    lines = ["## Reference", ""]
    if ref is not None:
        bar = summary["reference_error_bar"]
        kind = "95% CI half-width" if ref["ci95"] is not None else summary["reference_error_kind"]
        spread = f" ± {bar:.2g} ({kind})" if bar is not None else " (no error estimate)"
        seed = ", seed 0" if ref["stderr"] is not None else ""
        lines.append(f"- **Ours**: {ref['value']:.10g}{spread}, {summary['reference_source']}{seed}, "
                     f"{ref['wall_s']:.2f} s.")
        if ref["stderr"] is not None:
            lines.append(f"  Standard error {ref['stderr']:.3g}, 95% CI [{ref['ci95'][0]:.8g}, {ref['ci95'][1]:.8g}].")
        details = ", ".join(f"{key} = {value:.6g}" if isinstance(value, float) else f"{key} = {value}"
                            for key, value in ref["details"].items())
        lines.append(f"  Details: {details or 'none'}.")
    else:
        lines.append("- **Ours**: none; no method of `bsde.reference` applies to this problem.")
    if published["value"] is not None:
        lines.append(f"- **Published**: {published['value']:g} ({published['source'] or 'no source'}).")
    else:
        lines.append("- **Published**: none in the problem file.")
    basis = {"bsde.reference": "our reference (bsde.reference)",
             "published": "the published value, since no engine method applies"}.get(summary["reference_basis"])
    lines += ["", f"Relative errors are |mean y0 - ref| / |ref| against {basis}." if basis
              else "There is no reference, so no relative error."]
    if data["agreement"]:
        lines += ["", data["agreement"]]
    return lines


def _environment_section(env: dict[str, Any]) -> list[str]:
    return [
        "## How this was made", "",
        "```bash", env["command"], "```", "",
        f"- Date (UTC): {env['date']}",
        f"- Machine: {env['platform']}; CPU {env['cpu']}; {env['cores']} cores ({env['available_cores']} available)",
        f"- Device: {env['device']} ({env['device_name']}); torch threads {env['threads']}",
        f"- Versions: python {env['python']}, torch {env['torch']}, numpy {env['numpy']}, bsde {env['bsde']}",
        f"- Seeds: {', '.join(map(str, env['seeds']))}",
    ]


def markdown(data: dict[str, Any]) -> str:
    """The readable report of one comparison."""
    summary, env = data["summary"], data["environment"]
    lines = [f"# {data['problem']}: deep BSDE against the reference", "",
             f"{data['kind']}, dimension {data['dim']}, {summary['seeds']} seed{'s' * (summary['seeds'] != 1)} "
             f"on {summary['device']}.", "",
             markdown_table([cells(summary)]), "", f"![y0 and loss by iteration]({data['problem']}.png)", ""]
    lines += _reference_section(data)
    baseline = summary["baseline"]
    lines += ["", "## Runs", "",
              markdown_table([[str(run["seed"]), f"{run['y0']:.8g}", _num(run.get("error_estimate")),
                               _pct(run["rel_error"]), f"{run['final_loss']:.4g}", str(run["iterations"]),
                               f"{run['wall_s']:.2f} s"] for run in data["runs"]],
                             ("seed", "y0", "est. error", "rel. error", "final loss", "iterations", "wall")),
              "", "The estimated error is " + (data["runs"][0].get("error_basis") or "not available") + ".",
              "", "The driver-free baseline e^(-rT) E g(X_T) (what a solver stuck at Z = 0 returns) is "
              + (f"{baseline:.6g} ± {summary['baseline_stderr']:.2g}." if baseline is not None else "not finite."),
              ""]
    lines += _environment_section(env)
    return "\n".join(lines) + "\n"


def figure_png(data: dict[str, Any]) -> bytes:
    """Two panels: y0 by iteration for every seed with the reference band and the published line; the loss."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    summary = data["summary"]
    for run in data["runs"]:
        its = [row[0] for row in run["history"]]
        left.plot(its, [row[2] for row in run["history"]], lw=1.2, label=f"seed {run['seed']}")
        right.plot(its, [row[1] for row in run["history"]], lw=1.2, label=f"seed {run['seed']}")
    ref, bar = summary["reference"], summary["reference_error_bar"]
    if ref is not None:
        label = f"reference {ref:.6g}" + (f" ± {bar:.2g}" if bar else "") + f" ({summary['reference_method']})"
        if bar:
            left.axhspan(ref - bar, ref + bar, color="k", alpha=0.15, lw=0)
        left.axhline(ref, color="k", lw=1, label=label)
    if summary["published"] is not None and summary["reference_basis"] != "published":
        left.axhline(summary["published"], color="tab:red", ls="--", lw=1, label=f"published {summary['published']:g}")
    left.set(xlabel="iteration", ylabel="y0 = u(0, x0)", title=f"{data['problem']} (dim {data['dim']}): y0")
    right.set(xlabel="iteration", ylabel="validation loss", yscale="log", title="validation loss")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def read_reports(folder: Path) -> list[dict[str, Any]]:
    """Every comparison report (JSON with our FORMAT) in ``folder``, by problem name; others are skipped."""
    reports = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == FORMAT:
            reports.append(data)
    return sorted(reports, key=lambda data: data["problem"])


def index_markdown(reports: list[dict[str, Any]]) -> str:
    """The folder's README: one row per report, linked to its Markdown."""
    rows = []
    for data in reports:
        row = cells(data["summary"])
        row[0] = f"[{row[0]}]({data['problem']}.md)"
        rows.append(row)
    latest: dict[str, str] = {}
    for data in reports:
        env = data["environment"]
        latest[env["command"]] = max(latest.get(env["command"], ""), env["date"] or "")
    made = [f"`{command}` ({date})" for command, date in sorted(latest.items(), key=lambda item: item[1])]
    return "\n".join([
        "# Deep BSDE against reference values", "",
        "y0 is the mean ± standard deviation over seeds; the reference is ours (`bsde reference`, ± 95% CI "
        "half-width or the method's error estimate); relative errors are |mean y0 - ref| / |ref|.", "",
        markdown_table(rows), "",
        f"Regenerate the committed table with `{REGENERATE}`. Made by:", "",
        *[f"- {line}" for line in made], "",
    ])


def write_reports(data: dict[str, Any], folder: Path) -> list[Path]:
    """Write ``<problem>.json/.md/.png`` into ``folder`` and refresh its README.md; returns the four paths."""
    folder = ensure_folder(folder)
    stem = data["problem"]
    paths = [write_json_atomic(folder / f"{stem}.json", data),
             write_text_atomic(folder / f"{stem}.md", markdown(data)),
             write_bytes_atomic(folder / f"{stem}.png", figure_png(data))]
    return [*paths, write_index(folder)]


def write_index(folder: Path) -> Path:
    """(Re)write ``folder/README.md`` from every report JSON present there."""
    return write_text_atomic(Path(folder) / "README.md", index_markdown(read_reports(folder)))
