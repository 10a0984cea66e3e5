"""kind: custom through the CLI: every expression outside the language, and every bad process, is one line naming
the file, the key and the offending piece, with exit code 2; nothing in the text is ever run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bsde.cli.app import app

runner = CliRunner()

CORRELATION = [[1.0, 0.3, 0.2], [0.3, 1.0, 0.4], [0.2, 0.4, 1.0]]


def problem_file(tmp_path: Path, **changes) -> str:
    """A small valid custom problem with some keys changed (None removes a key), written as YAML."""
    equation = {"kind": "custom", "dim": 3, "x0": 100.0, "params": {"K": 100.0, "r": 0.05},
                "process": {"kind": "gbm", "drift": 0.05, "vol": [0.1, 0.2, 0.3], "correlation": CORRELATION},
                "terminal": "relu(K - mean(x))", "driver": "-r * y"}
    for key, value in changes.items():
        if value is None:
            equation.pop(key)
        else:
            equation[key] = value
    path = tmp_path / "mine.yaml"
    # JSON is YAML: each expression is one double-quoted scalar, whatever it contains
    path.write_text(json.dumps({"equation": equation, "solver": {"iterations": 2, "batch_size": 8, "time_steps": 2,
                                                                 "valid_size": 8}}))
    return str(path)


def fails_cleanly(args: list[str], *expected: str) -> str:
    result = runner.invoke(app, args)
    text = result.output.strip()
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and len(text.splitlines()) == 1, text
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_the_valid_file_shows_and_solves(tmp_path):
    path = problem_file(tmp_path)
    shown = runner.invoke(app, ["show", path])
    assert shown.exit_code == 0, shown.output
    assert "terminal: relu(K - mean(x))" in shown.output
    solved = runner.invoke(app, ["solve", path, "--json", "-q", "--device", "cpu", "--threads", "1"])
    assert solved.exit_code == 0, solved.output
    assert json.loads(solved.stdout.strip().splitlines()[-1])["kind"] == "custom"


REJECTED = [  # (terminal or driver text, fragments of the message naming the offending piece)
    ("x.__class__", "attribute access '.__class__'"),
    ("x.__class__.__mro__[1].__subclasses__()", "attribute access '.__subclasses__'"),
    ("sum(x).real", "attribute access '.real'"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("eval('1')", "unknown function 'eval'"),
    ("exec('import os')", "unknown function 'exec'"),
    ("getattr(x, 'sum')", "unknown function 'getattr'"),
    ("foo + 1", "unknown name 'foo'"),
    ("os", "unknown name 'os'"),
    ("(lambda: 1)()", "call"),
    ("lambda: 1", "lambda"),
    ("sum([v for v in x])", "list comprehension"),
    ("sum({v for v in x})", "set comprehension"),
    ("sum({v: 1 for v in x})", "dict comprehension"),
    ("sum(v for v in x)", "generator expression"),
    ("'abc'", "string"),
    ("K + 'abc'", "string"),
    ("__import__('os').system('touch pwned')", "attribute access '.system'"),
    ("__import__('os')", "dunder name '__import__'"),
    ("__builtins__", "dunder name '__builtins__'"),
    ("x[t]", "subscript 'x[t]'"),
    ("x[K]", "the index must be a constant integer"),
    ("x[0:2]", "the index must be a constant integer"),
    ("x[3]", "index 3"),
    ("sum(x, axis=0)", "keyword argument 'axis='"),
    ("relu(a=x[0])", "keyword argument 'a='"),
    ("sum(*x)", "starred argument"),
    ("x[0] if K else 0", "conditional expression"),
    ("x[0] > 1 and x[1] > 1", "boolean operator 'and'"),
    ("x[0] // 2", "operator '//'"),
    ("(v := 2)", "assignment expression"),
    ("f'{K}'", "f-string"),
    ("[1, 2][0]", "list"),
    ("True", "constant 'True'"),
    ("x", "is a vector"),
    ("relu(K - mean(x)", "syntax error"),
    ("K -", "syntax error"),
    ("import os", "syntax error"),
    ("x[0];x[1]", "syntax error"),
]


@pytest.mark.parametrize(("text", "fragment"), REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected_terminal(tmp_path, text, fragment):
    path = problem_file(tmp_path, terminal=text)
    fails_cleanly(["show", path], path, "equation.terminal:", fragment)


@pytest.mark.parametrize(("text", "fragment"), REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected_driver(tmp_path, text, fragment):
    text = "z" if text == "x" else text  # the driver sees z too: the vector it must reduce
    path = problem_file(tmp_path, driver=text)
    fails_cleanly(["show", path], path, "equation.driver:", fragment)


@pytest.mark.parametrize(("text", "fragment"), [
    ("__import__('os').system('touch pwned')", "attribute access '.system'"),
    ("__import__('os')", "dunder name '__import__'"),
    ("x.__class__", "attribute access '.__class__'"),
    ("[v for v in x][0]", "list comprehension"),
])
def test_solve_refuses_before_running_anything(tmp_path, monkeypatch, text, fragment):
    monkeypatch.chdir(tmp_path)
    path = problem_file(tmp_path, terminal=text)
    fails_cleanly(["solve", path, "-q", "--device", "cpu"], path, "equation.terminal:", fragment)
    fails_cleanly(["reference", path], path, "equation.terminal:", fragment)
    assert not (tmp_path / "pwned").exists()


def test_override_and_variable_roles(tmp_path):
    path = problem_file(tmp_path)
    fails_cleanly(["show", path, "--set", "equation.terminal=y"], "equation.terminal (from --set)",
                  "unknown name 'y' in the terminal (it sees x)")
    fails_cleanly(["show", path, "--set", "equation.driver=x.y"], "equation.driver (from --set)",
                  "attribute access '.y'")
    fails_cleanly(["show", path, "--set", "equation.dim=4"], "equation.process.vol", "dim = 4")


@pytest.mark.parametrize(("changes", "expected"), [
    ({"process": {"kind": "gbm", "drift": 0.05, "vol": 0.2, "correlation": [[1, 0.9, 0.9], [0.9, 1, -0.9],
                                                                            [0.9, -0.9, 1]]}},
     ("equation.process.correlation:", "not positive definite")),
    ({"process": {"kind": "gbm", "drift": 0.05, "vol": 0.2, "correlation": [[1, 0.3, 0.2], [0.1, 1, 0.4],
                                                                            [0.2, 0.4, 1]]}},
     ("equation.process.correlation:", "not symmetric")),
    ({"process": {"kind": "gbm", "drift": 0.05, "vol": 0.2, "correlation": [[1, 0.3], [0.3, 1]]}},
     ("equation.process.correlation:", "3x3 matrix", "got 2x2")),
    ({"process": {"kind": "gbm", "drift": 0.05, "vol": 0.2, "correlation": [[1, 0.3, 0.2], [0.3, 1], [0.2, 0.4, 1]]}},
     ("equation.process.correlation:", "3x3", "got 3 rows of 2 or 3 numbers")),  # not '3x3' (QA)
    ({"process": {"kind": "gbm", "drift": 0.05, "vol": 0.2, "correlation": [[2, 0.3, 0.2], [0.3, 1, 0.4],
                                                                            [0.2, 0.4, 1]]}},
     ("equation.process.correlation:", "ones on its diagonal")),
    ({"process": {"kind": "gbm", "drift": 0.05, "vol": 0.2, "correlation": 1.0}},
     ("equation.process.correlation:", "not positive definite")),
    ({"process": {"kind": "gbm", "drift": 0.05, "vol": [0.1, 0.2]}}, ("equation.process.vol:", "dim = 3")),
    ({"process": {"kind": "gbm", "drift": 0.05, "vol": -0.1}}, ("equation.process.vol:", "non-negative")),
    ({"process": {"kind": "gbm", "drift": 0.05, "vols": 0.1}},
     ("equation.process.vols:", "unknown key", "did you mean 'vol'")),
    ({"process": {"kind": "gmb", "drift": 0.05, "vol": 0.1}}, ("equation.process.kind:", "unknown kind 'gmb'")),
    ({"process": {"drift": 0.05, "vol": 0.1}}, ("equation.process.kind:", "missing")),
    ({"process": None}, ("equation.process:", "Field required")),
    ({"process": {"kind": "brownian", "sigma": -1}}, ("equation.process.sigma:", "greater than 0")),
    ({"process": {"kind": "diffusion", "sigma": "0.2 * x", "drift": "x.__dict__"}},
     ("equation.process.drift:", "attribute access '.__dict__'")),
    ({"process": {"kind": "diffusion", "sigma": "0.2 * z"}}, ("equation.process.sigma:", "unknown name 'z'")),
    ({"process": {"kind": "diffusion", "sigma": "0.2 * x", "substeps": 0}}, ("equation.process.substeps:",)),
    ({"x0": -1.0}, ("equation.x0:", "positive")),
    ({"params": {"__class__": 1.0}}, ("equation.params.__class__:", "not a name")),
    ({"params": {"a b": 1.0}}, ("equation.params: 'a b' is not a name",)),  # the whole key, not params.a
    ({"params": {"exp": 1.0}}, ("equation.params.exp:", "reserved")),
    ({"params": {"K": [1.0, 2.0]}}, ("equation.params.K:", "dim = 3")),
    ({"params": {"K": "abc"}}, ("equation.params.K",)),
    ({"terminal": None}, ("equation.terminal:", "Field required")),
    ({"terminal": ["x"]}, ("equation.terminal:", "expected an expression as text")),
    ({"terminl": "x[0]"}, ("equation.terminl:", "unknown key", "did you mean 'terminal'")),
    ({"closed_form": {"name": "geometric_basket_cal", "strike": 100}},
     ("equation.closed_form.name:", "did you mean 'geometric_basket_call'")),
    ({"closed_form": {"name": "geometric_basket_put", "strike": -1}}, ("equation.closed_form.strike:", ">= 0")),
    ({"closed_form": {"name": "exchange_option"}}, ("equation.closed_form:", "needs dim = 2")),
    ({"closed_form": {"name": "geometric_basket_call", "strike": 100}, "process": {"kind": "brownian", "sigma": 1}},
     ("equation.closed_form:", "geometric_basket_call needs a gbm process, not BrownianMotion")),
    ({"closed_form": {"name": "geometric_basket_call", "strike": 100}, "driver": "-r * y + sum(z)"},
     ("equation.closed_form:", "the driver must be -r y")),
    ({"terminal_fn": "x[0]"}, ("equation.terminal_fn:", "unknown key")),
])
def test_bad_custom_problem(tmp_path, changes, expected):
    path = problem_file(tmp_path, **changes)
    fails_cleanly(["show", path], path, *expected)
