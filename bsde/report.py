"""Comparison reports: ``<name>.json``, ``<name>.md``, ``<name>.png`` and the folder's ``README.md``.

Everything is rendered from the JSON mapping of :meth:`bsde.compare.Comparison.to_dict`, so the
index can be rebuilt from the JSON files alone. Plots use matplotlib's Agg canvas directly (no
pyplot, no global backend); every file goes through :mod:`bsde.io`'s atomic writes.

A report's name is its problem's name, made unique by :func:`report_names` (two problems named ``p``
give ``p`` and ``p-2``; a folder's ``p.json`` of another problem, by the name the command gave it, makes a
new ``p`` ``p-2``; ``README`` is the index's and is never a report's).
Nothing bsde did not write is replaced (:func:`check_folder`): the index starts with
:data:`MARKER`, and a report's files are bsde's when its JSON is a comparison report.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bsde.compare import FORMAT, relative_error
from bsde.io import OutputError, ensure_folder, write_bytes_atomic, write_json_atomic, write_text_atomic

COLUMNS = ("problem", "dim", "seeds", "y0 mean ± std", "reference ± error", "method", "rel. error",
           "published", "rel. error vs published", "baseline", "Z = 0 value", "wall / solve", "device")
#: the index's file name (no report may take its stem)
INDEX = "README.md"
#: the first line of every index bsde writes: a README.md without it is the user's and is never replaced
MARKER = "<!-- written by bsde compare -->"
#: the first line of the indexes bsde wrote before MARKER (recognised with their 'Regenerate the committed table' sentence)
LEGACY_TITLE = "# Deep BSDE against reference values"
#: the kinds of file of one report
SUFFIXES = (".json", ".md", ".png")


def report_names(problems: list[str], sources: list[str] | None = None, folder: Path | None = None) -> list[str]:
    """A unique report name for each problem name of one run, in order.

    The first problem of a name keeps it; a later one of the same name (compared without regard to
    case, as some file systems do) becomes ``<name>-2``, ``<name>-3``..., skipping names that other
    problems of the run have; ``README`` (the index's name) becomes ``README-2``. With ``folder``, a name
    whose report there records another source (the problem as a command named it, ``sources``) is taken
    too: a rerun of ``d2/p.yaml`` updates its own report, never that of ``d1/p.yaml``.
    """
    sources = sources or problems
    reserved = {Path(INDEX).stem.casefold()}
    taken = {name.casefold() for name in problems} | reserved
    used: set[str] = set(reserved)

    def another(name: str, source: str) -> bool:
        recorded = None if folder is None else report_source(Path(folder) / f"{name}.json")
        return recorded is not None and recorded != source

    names = []
    for name, source in zip(problems, sources):
        chosen, k = name, 1
        while chosen.casefold() in used or another(chosen, source):
            k += 1
            while f"{name}-{k}".casefold() in taken | used:
                k += 1
            chosen = f"{name}-{k}"
        used.add(chosen.casefold())
        names.append(chosen)
    return names


def _read_report(path: Path) -> dict[str, Any] | None:
    """The comparison report (JSON of our FORMAT) in ``path``, or None where it holds none (or cannot be read)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def report_source(path: Path) -> str | None:
    """The problem a report in ``path`` compared, as its command named it (before sources were recorded, by its
    problem's name); None where ``path`` holds no comparison report."""
    data = _read_report(path)
    return None if data is None else str(data.get("source") or data.get("problem"))


def named(data: dict[str, Any], name: str, source: str | None = None) -> dict[str, Any]:
    """``data`` (:meth:`~bsde.compare.Comparison.to_dict`) with its report name recorded, also in its summary,
    and ``source`` (the problem as the command named it) where given."""
    return {**data, "report": name, **({"source": source} if source else {}),
            "summary": {**data["summary"], "report": name}}


def _report_name(data: dict[str, Any]) -> str:
    return data.get("report") or data["problem"]


def _refuse(path: Path, what: str) -> OutputError:
    return OutputError(f"{path}: not {what} written by bsde compare; not replacing it: move it away, "
                       "or give another folder")


def _is_index(path: Path) -> bool:
    """Whether ``path`` is an index bsde wrote (it starts with MARKER, or is one of before MARKER)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    first = text.partition("\n")[0].rstrip("\r")
    return first == MARKER or (first == LEGACY_TITLE and "Regenerate the committed table with `" in text)  # before


def _is_report(path: Path) -> bool:
    return _read_report(path) is not None


def check_folder(folder: Path, names: list[str]) -> None:
    """Refuse (:class:`OutputError`, naming the file) to write reports ``names`` and the index into ``folder``
    where that would replace a file bsde did not write.

    ``README.md`` must be an index bsde wrote; ``<name>.json`` a comparison report, and without it
    neither ``<name>.md`` nor ``<name>.png`` may exist. Reports bsde wrote are replaced (a rerun
    updates them).
    """
    folder = Path(folder)
    index = folder / INDEX
    if index.exists() and not (index.is_file() and _is_index(index)):
        raise _refuse(index, "an index")
    for name in names:
        report = folder / f"{name}.json"
        if report.exists():
            if not (report.is_file() and _is_report(report)):
                raise _refuse(report, "a report")
            continue
        for suffix in SUFFIXES[1:]:
            if (folder / f"{name}{suffix}").exists():
                raise _refuse(folder / f"{name}{suffix}", "a report")


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
        summary.get("report") or summary["problem"], str(summary["dim"]), str(summary["seeds"]),
        f"{summary['y0_mean']:.6g}" + (f" ± {summary['y0_std']:.2g}" if summary["seeds"] > 1 else ""),  # 1: no std
        ref, method, _pct(summary.get("rel_error")),
        _num(summary.get("published")), _pct(summary.get("rel_error_published")), baseline,
        _num(summary.get("zero_z_value")),
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


def _error_bases(runs: list[dict[str, Any]]) -> list[str]:
    """How each run's error was estimated: one sentence where the seeds agree, else one line per seed (a control
    bound's value and paths differ between seeds); then the runs' warnings, each with its seed."""
    bases = [run.get("error_basis") or "not available" for run in runs]
    lines = ([f"The estimated error is {bases[0]}."] if len(set(bases)) == 1 else
             ["The estimated error, by seed:", "", *(f"- seed {run['seed']}: {basis}" for run, basis in zip(runs, bases))])
    warned = [(run["seed"], text) for run in runs for text in run.get("warnings") or []]
    if warned:
        lines += ["", "Warnings:", "", *(f"- seed {seed}: {text}" for seed, text in warned)]
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
    summary, env, name = data["summary"], data["environment"], _report_name(data)
    lines = [f"# {name}: deep BSDE against the reference", ""]
    if name != data["problem"]:
        source = f" from `{data['source']}`" if data.get("source") else ""
        why = (f"{INDEX} is the folder's index" if data["problem"].casefold() == Path(INDEX).stem.casefold()
               else "another problem's report has its name")
        lines += [f"Problem `{data['problem']}`{source}, reported as {name}: {why}.", ""]
    lines += [f"{data['kind']}, dimension {data['dim']}, {summary['seeds']} seed{'s' * (summary['seeds'] != 1)} "
              f"on {summary['device']}.", "",
              markdown_table([cells(summary)]), "", f"![y0 and loss by iteration]({name}.png)", ""]
    lines += _reference_section(data)
    baseline = summary["baseline"]
    lines += ["", "## Runs", "",
              markdown_table([[str(run["seed"]), f"{run['y0']:.8g}", _num(run.get("error_estimate")),
                               _pct(run["rel_error"]), f"{run['final_loss']:.4g}", str(run["iterations"]),
                               f"{run['wall_s']:.2f} s"] for run in data["runs"]],
                             ("seed", "y0", "est. error", "rel. error", "final loss", "iterations", "wall")),
              "", *_error_bases(data["runs"]),
              "", "The driver-free baseline E g(X_T) (times e^(-rT) where the driver is f = -r y) is "
              + (f"{baseline:.6g} ± {summary['baseline_stderr']:.2g}." if baseline is not None else "not finite.")
              + _zero_z_sentence(summary.get("zero_z_value"), summary.get("reference")),
              ""]
    lines += _environment_section(env)
    return "\n".join(lines) + "\n"


def _zero_z_sentence(value: float | None, reference: float | None) -> str:
    """What a solver stuck at Z = 0 returns, and how far that is from the reference."""
    if value is None:
        return ""
    distance = f" ({_pct(relative_error(value, reference))} from the reference)" if reference else ""
    return (f" A solver stuck at Z = 0 returns {value:.6g}{distance}: the y0 that minimises the loss "
            "E|Y_N - g(X_T)|^2 of its march Y_{n+1} = Y_n - f(t_n, X_n, Y_n, 0) dt (bsde.trivial).")


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
    left.set(xlabel="iteration", ylabel="y0 = u(0, x0)", title=f"{_report_name(data)} (dim {data['dim']}): y0")
    right.set(xlabel="iteration", ylabel="validation loss", yscale="log", title="validation loss")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def read_reports(folder: Path) -> list[dict[str, Any]]:
    """Every comparison report (JSON with our FORMAT) in ``folder``, by report name (its file's stem, recorded
    under ``report``); others are skipped."""
    reports = []
    for path in sorted(Path(folder).glob("*.json")):
        if (data := _read_report(path)) is not None:
            reports.append(named(data, path.stem))
    return sorted(reports, key=lambda data: data["report"])


def index_markdown(reports: list[dict[str, Any]]) -> str:
    """The folder's README: one row per report, linked to its Markdown."""
    rows = []
    for data in reports:
        row = cells(data["summary"])
        row[0] = f"[{row[0]}]({_report_name(data)}.md)"
        rows.append(row)
    latest: dict[str, str] = {}
    for data in reports:
        env = data["environment"]
        latest[env["command"]] = max(latest.get(env["command"], ""), env["date"] or "")
    made = [f"`{command}` ({date})" for command, date in sorted(latest.items(), key=lambda item: item[1])]
    return "\n".join([
        MARKER, LEGACY_TITLE, "",
        "y0 is the mean ± standard deviation over seeds; the reference is ours (`bsde reference`, ± 95% CI "
        "half-width or the method's error estimate); relative errors are |mean y0 - ref| / |ref|.", "",
        markdown_table(rows), "",
        "Each row was made by one of these commands (a row is rerun by its own command with `--out` this "
        "folder):", "",
        *[f"- {line}" for line in made], "",
    ])


def write_reports(data: dict[str, Any], folder: Path) -> list[Path]:
    """Write ``<name>.json/.md/.png`` into ``folder`` and refresh its README.md; returns the four paths.

    ``name`` is the report name (:func:`named`), else the problem's. Nothing is written where
    :func:`check_folder` refuses.
    """
    folder = ensure_folder(folder)
    stem = _report_name(data)
    if stem.casefold() == Path(INDEX).stem.casefold():
        raise OutputError(f"{folder / INDEX}: is the index; a report cannot be named '{stem}'")
    check_folder(folder, [stem])
    paths = [write_json_atomic(folder / f"{stem}.json", data),
             write_text_atomic(folder / f"{stem}.md", markdown(data)),
             write_bytes_atomic(folder / f"{stem}.png", figure_png(data))]
    return [*paths, write_index(folder)]


def write_index(folder: Path) -> Path:
    """(Re)write ``folder/README.md`` from every report JSON present there (refused where it is not bsde's)."""
    check_folder(folder, [])
    return write_text_atomic(Path(folder) / "README.md", index_markdown(read_reports(folder)))
