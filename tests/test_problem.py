"""Loading problems: shipped files, user files, overrides, presets and the errors they raise."""

import re

import pytest

import bsde
from bsde.errors import ProblemError
from bsde.problem import parse_override
from bsde.settings import SolverSettings


@pytest.mark.parametrize("name", ["hjb", "allen_cahn", "max_call", "default_risk"])
def test_shipped_problems_load(name):
    problem = bsde.load_problem(name)
    assert problem.equation.kind == name and problem.equation.dim == 100
    assert problem.solver.batch_size == 64
    assert problem.solver.widths(100) == [110, 110]


def test_pnas_defaults():
    assert bsde.load_problem("hjb").solver.time_steps == 20
    assert bsde.load_problem("allen_cahn").solver.time_steps == 20
    assert bsde.load_problem("default_risk").solver.time_steps == 40
    assert bsde.load_problem("default_risk").equation.delta == pytest.approx(2 / 3)


def test_overrides_are_yaml_values_and_drop_stale_reference():
    problem = bsde.load_problem("hjb", {"equation.dim": 50, "equation.x0": 0.1, "solver.iterations": 500})
    assert problem.equation.dim == 50 and problem.equation.x_start == (0.1,) * 50
    assert problem.solver.iterations == 500
    assert problem.reference.value is None  # the file's 100-d value no longer applies
    same = bsde.load_problem("hjb", {"solver.iterations": 10})
    assert same.reference.value == pytest.approx(4.5901)  # solver changes keep it
    spelled_out = bsde.load_problem("hjb", {"equation.x0": [0.0] * 100})  # the file's x0: 0.0, written as a list
    assert spelled_out.reference.value == pytest.approx(4.5901)
    assert bsde.load_problem("hjb", {"equation.x0": [0.0] * 99 + [0.1]}).reference.value is None
    assert parse_override("equation.x0=[1, 2]") == ("equation.x0", [1, 2])
    assert parse_override("solver.dtype=float32") == ("solver.dtype", "float32")


def test_overrides_win_over_the_preset():
    """file < preset < overrides, whatever the order they are given in."""
    assert bsde.load_problem("hjb", preset="fast").solver.iterations == 1200
    problem = bsde.load_problem("hjb", {"solver.iterations": 100}, preset="fast")
    assert problem.solver.iterations == 100 and problem.solver.dtype == "float32"  # the rest of the preset holds
    assert problem.solver.time_steps == 20 and problem.source.endswith("hjb.yaml (preset fast)")
    assert problem.reference.value == pytest.approx(4.5901)  # solver changes keep the file's reference
    assert bsde.load_problem("hjb", {"solver.dtype": "float64"}, preset="fast").solver.dtype == "float64"
    # an override of the preset itself changes what the preset applies
    assert bsde.load_problem("hjb", {"presets.fast.iterations": 7}, preset="fast").solver.iterations == 7
    changed = bsde.load_problem("hjb", {"equation.dim": 3}, preset="fast")
    assert changed.reference.value is None and changed.solver.iterations == 1200


def test_preset_layers_nested_keys_under_overrides(tmp_path):
    path = tmp_path / "layered.yaml"
    path.write_text("equation: {kind: hjb, dim: 2}\n"
                    "solver: {iterations: 50, learning_rate: {boundaries: [10], values: [0.1, 0.01]}}\n"
                    "presets: {quick: {iterations: 20, learning_rate: {boundaries: [5], values: [0.2, 0.02]}}}\n")
    problem = bsde.load_problem(str(path), {"solver.learning_rate.values": [0.3, 0.03]}, preset="quick")
    assert problem.solver.iterations == 20
    assert [problem.solver.rate_at(i) for i in (0, 5)] == [0.3, 0.03]  # the preset's boundaries, --set's values


def test_preset_errors_name_the_key():
    with pytest.raises(ProblemError, match=re.escape("hjb.yaml: preset 'nope' not defined (presets: fast)")):
        bsde.load_problem("hjb", preset="nope")
    with pytest.raises(ProblemError, match=re.escape("solver.iterations (from overrides): Input should be greater")):
        bsde.load_problem("hjb", {"solver.iterations": 0}, preset="fast")
    with pytest.raises(ProblemError, match=re.escape("presets.fast.iterations (from overrides)")):
        bsde.load_problem("hjb", {"presets.fast.iterations": 0}, preset="fast")


def test_x0_list_and_vol_list():
    problem = bsde.load_problem("max_call", {"equation.dim": 2, "equation.x0": [90, 110], "equation.vol": [0.1, 0.3]})
    assert problem.equation.x_start == (90.0, 110.0)
    assert problem.equation.vols == (0.1, 0.3)


def test_user_file_in_another_folder(tmp_path):
    path = tmp_path / "sub" / "mine.yaml"
    path.parent.mkdir()
    path.write_text("equation: {kind: allen_cahn, dim: 7}\nsolver: {iterations: 3}\n")
    problem = bsde.load_problem(str(path))
    assert problem.name == "mine" and problem.equation.dim == 7 and problem.equation.total_time == 0.3


def test_piecewise_learning_rate():
    problem = bsde.load_problem("hjb", {"solver.learning_rate": {"boundaries": [10, 20], "values": [1, 0.5, 0.25]}})
    assert [problem.solver.rate_at(i) for i in (0, 9, 10, 19, 20, 1000)] == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_a_schedule_past_the_last_iteration_is_named():
    fixed = {"solver.learning_rate": {"boundaries": [1000, 1600], "values": [0.02, 0.005, 0.001]}}
    assert bsde.load_problem("hjb", fixed).solver.schedule_warning() is None
    late = bsde.load_problem("hjb", {**fixed, "solver.iterations": 1200}).solver.schedule_warning()
    assert "boundaries [1600]" in late and "solver.iterations = 1200" in late and "ends at 0.005" in late
    assert "fractions of the run" in late
    assert bsde.load_problem("hjb", {"solver.iterations": 1200, "solver.learning_rate": 0.01}).solver.schedule_warning() \
        is None


@pytest.mark.parametrize(("name", "preset"), [("hjb", None), ("hjb", "fast"), ("allen_cahn", "fast"),
                                              ("max_call", None), ("basket_put", "fast")])
def test_a_shipped_schedule_moves_with_the_iterations(name, preset):
    """The shipped problems step their rate down at fractions of the run: a shortened run still decays."""
    full = bsde.load_problem(name, preset=preset).solver
    short = bsde.load_problem(name, {"solver.iterations": full.iterations // 4}, preset=preset).solver
    assert short.schedule_warning() is None
    assert short.rate_at(short.iterations - 1) == full.rate_at(full.iterations - 1) < full.rate_at(0)
    first, second = full.learning_rate.fractions
    assert short.rate_at(int(first * short.iterations) - 1) == short.rate_at(0)
    assert short.rate_at(int(first * short.iterations)) < short.rate_at(0)


def test_a_dotted_override_of_one_form_replaces_the_other():
    """hjb's file gives fractions: setting boundaries alone keeps the file's values and drops its fractions."""
    rate = bsde.load_problem("hjb", {"solver.learning_rate.boundaries": [100, 200]}).solver.learning_rate
    assert (rate.boundaries, rate.fractions, rate.values) == ([100, 200], None, [0.02, 0.005, 0.001])
    back = bsde.load_problem("hjb", {"solver.learning_rate.boundaries": [100, 200],
                                     "solver.learning_rate.fractions": [0.25, 0.5]}).solver.learning_rate
    assert (back.boundaries, back.fractions) == (None, [0.25, 0.5])


def test_fractions_of_the_run():
    rate = bsde.load_problem("hjb", {"solver.iterations": 10, "solver.learning_rate":
                                     {"fractions": [0.5, 0.8], "values": [3, 2, 1]}}).solver
    assert [rate.rate_at(i) for i in range(10)] == [3] * 5 + [2] * 3 + [1] * 2
    tiny = bsde.load_problem("hjb", {"solver.iterations": 2, "solver.learning_rate":
                                     {"fractions": [0.1, 0.2], "values": [3, 2, 1]}}).solver
    assert tiny.learning_rate.boundaries_for(2) == [1, 2]  # each change at least one after the one before
    for bad, message in [({"fractions": [0.5, 1.0], "values": [3, 2, 1]}, "strictly between 0 and 1"),
                         ({"fractions": [0.8, 0.5], "values": [3, 2, 1]}, "fractions must be non-negative and "
                                                                            "increasing"),
                         ({"fractions": [0.5], "boundaries": [5], "values": [2, 1]}, "one of the two"),
                         ({"values": [2, 1]}, "one of the two"),
                         ({"fractions": [0.5], "values": [3, 2, 1]}, r"len\(fractions\) \+ 1 = 2")]:
        with pytest.raises(ProblemError, match=message):
            bsde.load_problem("hjb", {"solver.learning_rate": bad})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"equation.dimm": 3}, "equation.dimm (from overrides): unknown key; did you mean 'dim'"),
        ({"equation.dim": 0}, "equation.dim"),
        ({"equation.dim": 2.5}, "equation.dim"),
        ({"equation.x0": [1, 2]}, "equation.x0 (from overrides): expected a number or a list of dim = 100 numbers"),
        ({"equation.total_time": 0}, "equation.total_time"),
        ({"solver.time_steps": -1}, "solver.time_steps"),
        ({"solver.batch_size": "many"}, "solver.batch_size"),
        ({"equation.kind": "heat"}, "equation.kind (from overrides): unknown kind 'heat'"),
        ({"solvr.iterations": 3}, "did you mean 'solver.iterations'"),
        ({"solver.learning_rate": {"boundaries": [5], "values": [1.0]}}, "solver.learning_rate"),
        ({"equation.lam": float("nan")}, "equation.lam"),
        # pydantic's lax mode would read true as 1: a boolean is not a number here
        ({"solver.iterations": True}, "solver.iterations (from overrides): expected a number, got True"),
        ({"solver.hidden": [True, 2]}, "solver.hidden (from overrides): expected a number or a list of numbers"),
        ({"equation.lam": False}, "equation.lam (from overrides): expected a number, got False"),
        ({"equation.x0": [True] * 100}, "equation.x0 (from overrides): expected a number or a list of numbers"),
        ({"solver.region": {"low": True, "high": 1}}, "solver.region.low (from overrides): expected a number or a list of numbers, got True"),
        ({"reference.value": True}, "reference.value (from overrides): expected a number, got True"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ProblemError, match=re.escape(message)) as info:
        bsde.load_problem("hjb", overrides)
    assert "\n" not in str(info.value) and "hjb.yaml" in str(info.value)


def test_a_boolean_correlation_is_told_what_it_may_be():
    with pytest.raises(ProblemError, match=re.escape("equation.correlation (from overrides): expected a number or a "
                                                     "matrix (a list of rows of numbers), got False")):
        bsde.load_problem("max_call", {"equation.correlation": False})


def test_booleans_stay_booleans_and_numeric_text_stays_a_number():
    problem = bsde.load_problem("hjb", {"solver.tf32": False, "solver.learning_rate": "1e-3"})  # YAML 1.1: a string
    assert problem.solver.tf32 is False and problem.solver.learning_rate == 1e-3


def test_libyaml_reads_every_shipped_problem_as_the_python_loader_does():
    """Problems are read through libyaml where PyYAML has it (for start-up); the pure-Python loader is the reference."""
    import yaml

    from bsde.problem import _FastUniqueKeyLoader, _load_yaml, _UniqueKeyLoader, shipped_problems

    if hasattr(yaml, "CSafeLoader"):
        assert issubclass(_FastUniqueKeyLoader, yaml.CSafeLoader)
    for path in shipped_problems().values():
        text = path.read_text()
        assert _load_yaml(text) == yaml.load(text, Loader=_UniqueKeyLoader), path
    assert _load_yaml("a: 1e3\nb: 1.0e+3\nc: yes\nd: 0x10\n") == {"a": "1e3", "b": 1000.0, "c": True, "d": 16}


def test_bad_files(tmp_path):
    cases = {
        "empty.yaml": (b"", "empty file"),
        "list.yaml": (b"- 1\n- 2\n", "expected a mapping"),
        "dup.yaml": (b"equation:\n  kind: hjb\n  kind: hjb\n", "duplicate key 'kind'"),
        "syntax.yaml": (b"equation: {kind: hjb\n", "YAML error at line"),
        "alias.yaml": (b"equation: *nope\n", "undefined alias 'nope'"),  # the Python loader's words, not libyaml's
        "nested_dup.yaml": (b"equation: {kind: hjb, kind: hjb}\n", "duplicate key 'kind'"),
        "on.yaml": (b"equation: {kind: custom, params: {on: 1.0}}\n", "key 'on' reads as the boolean true in YAML"),
        "merge.yaml": (b"equation: {kind: hjb, <<: {dim: 2}}\n", r"merge keys \(<<\) are not read"),
        "latin1.yaml": ("equation: {kind: hjb}  # caf\u00e9\n".encode("latin-1"), "expected UTF-8 text, got byte 0xe9"),
        "code.yaml": (b"equation: !!python/object/apply:os.system ['echo hi']\n", "YAML error"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ProblemError, match=message):
            bsde.load_problem(str(path))
    with pytest.raises(ProblemError, match="is a directory"):
        bsde.load_problem(str(tmp_path) + "/")
    with pytest.raises(ProblemError, match="no such file"):
        bsde.load_problem(str(tmp_path / "missing.yaml"))
    with pytest.raises(ProblemError, match="unknown problem 'hbj'; did you mean 'hjb'"):
        bsde.load_problem("hbj")


@pytest.mark.parametrize(("key", "meant"), [("iterations", "solver.iterations"), ("dim", "equation.dim"),
                                            ("value", "reference.value"), ("equaton.dim", "equation.dim")])
def test_a_key_without_its_section_is_given_one(key, meant):
    with pytest.raises(ProblemError, match=re.escape(f"did you mean '{meant}'?")):
        bsde.load_problem("hjb", {key: 10})


@pytest.mark.parametrize(("build", "message"), [
    (lambda: bsde.EQUATIONS["hjb"](dim=0), "HJB: dim: Input should be greater than or equal to 1"),
    (lambda: bsde.EQUATIONS["hjb"](dim=3, lamm=1.0), "HJB: lamm: unknown key; did you mean 'lam'?"),
    (lambda: SolverSettings(iteratons=5), "SolverSettings: iteratons: unknown key; did you mean 'iterations'?"),
    (lambda: SolverSettings(iterations=True), "SolverSettings: iterations: expected a number, got True"),
])
def test_a_model_built_in_python_fails_in_one_line(build, message):
    """Equations and settings are pydantic models: built directly, a bad value is a ProblemError, not pydantic's."""
    with pytest.raises(ProblemError) as raised:
        build()
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_an_overridden_reference_value_drops_the_files_source():
    """hjb's file cites PNAS for 4.5901; a value set by override is not the paper's."""
    mine = bsde.load_problem("hjb", {"reference.value": 9.0, "equation.lam": 2.0}).reference
    assert (mine.value, mine.source, mine.stderr) == (9.0, "reference.value override", None)
    cited = bsde.load_problem("hjb", {"reference.value": 9.0, "reference.source": "my notes",
                                      "reference.stderr": 0.1}).reference
    assert (cited.source, cited.stderr) == ("my notes", 0.1)
    assert "PNAS" in bsde.load_problem("hjb", {"solver.iterations": 10}).reference.source


def test_changing_the_kind_by_override_says_why_the_files_keys_are_unknown():
    with pytest.raises(ProblemError, match=r"equation.lam: unknown key .*overrides equation.kind=max_call keeps the file's"):
        bsde.load_problem("hjb", {"equation.kind": "max_call"})
