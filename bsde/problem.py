"""Problems: YAML files with ``equation``, ``solver``, ``reference`` and ``presets`` sections.

``load_problem(name_or_path, overrides, preset=...)`` reads a shipped problem by name or any
YAML file, applies a named preset and then dotted ``section.key=value`` overrides (file < preset <
overrides), validates everything and returns a :class:`Problem`. Every failure is a
:class:`ProblemError` whose one-line message names the file and the dotted key.
"""

from __future__ import annotations

import copy
import difflib
import typing
from dataclasses import dataclass, field, replace
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Annotated, Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, Tag, ValidationError

from bsde.equations import EQUATIONS, Equation
from bsde.errors import ArgumentError, ProblemError
from bsde.no_bools import NoBoolNumbers
from bsde.region import region_problem
from bsde.settings import SolverSettings

SECTIONS = ("equation", "solver", "reference", "presets")


class Reference(NoBoolNumbers):
    """A trusted value to compare against, with where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    value: float | None = None
    source: str = ""
    stderr: float | None = Field(None, ge=0)


@dataclass(frozen=True)
class Problem:
    """A validated problem: the equation, how to solve it, and what to compare with."""

    name: str
    equation: Equation
    solver: SolverSettings
    reference: Reference = Reference()
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<memory>"

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved configuration (what ``bsde show`` prints)."""
        return {
            "equation": self.equation.model_dump(mode="json"),
            "solver": self.solver.model_dump(mode="json"),
            "reference": self.reference.model_dump(mode="json"),
            "presets": copy.deepcopy(self.presets),
        }

    def with_preset(self, name: str) -> Problem:
        """This problem with the named solver overlay applied on top of its resolved settings.

        The overlay replaces every solver key it names, including keys that overrides set; to
        keep overrides on top (file < preset < overrides), use ``load_problem(..., preset=name)``.
        """
        raw = self.to_dict()
        raw["solver"].update(_preset_overlay(self.presets, name, self.source))
        return _build(raw, self.name, f"{self.source} (preset {name})")


# ---------------------------------------------------------------------------- reading YAML
class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects duplicate mapping keys instead of keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, bool):  # no key of a problem is a boolean: YAML 1.1 read on/off/yes/no as one (QA)
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key_node.value}' reads as the boolean {str(key).lower()} in YAML (as do yes, no, "
                f"on, off): quote it, '{key_node.value}'", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _FastUniqueKeyLoader(getattr(yaml, "CSafeLoader", _UniqueKeyLoader)):
    """The same loader over libyaml's parser where PyYAML has it (a tenth of the time: `bsde list` reads ten files)."""


_FastUniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str) -> Any:
    """``text`` through libyaml where it reads it; what it refuses is read again by the pure-Python loader, whose
    messages name the offending token (and whose reading is the one that counts)."""
    try:
        return yaml.load(text, Loader=_FastUniqueKeyLoader)  # noqa: S506 - a SafeLoader (CSafeLoader) subclass
    except yaml.YAMLError:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file as a mapping, through a safe loader; one-line errors for every failure."""
    if not path.exists():
        raise ProblemError(f"{path}: no such file")
    if path.is_dir():
        raise ProblemError(f"{path}: is a directory, expected a YAML file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start:exc.start + 1].hex()
        raise ProblemError(f"{path}: expected UTF-8 text, got byte 0x{bad} at offset {exc.start}") from None
    except OSError as exc:
        raise ProblemError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "tag:yaml.org,2002:merge" in problem:
            problem = "merge keys (<<) are not read: write the keys out (anchors and aliases, &a and *a, are)"
        elif "could not determine a constructor" in problem:
            problem += " (only plain YAML is read: no !!python tags)"
        raise ProblemError(f"{path}: YAML error{where}: {problem}") from None
    if data is None:
        raise ProblemError(f"{path}: empty file, expected a mapping with an 'equation' section")
    if not isinstance(data, dict):
        raise ProblemError(f"{path}: expected a mapping at the top level, got {_describe(data)}")
    return data


def shipped_problems() -> dict[str, Path]:
    """Names of the problems shipped with the package -> their files."""
    folder = resources.files("bsde.problems")
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith((".yaml", ".yml"))
    }


def resolve_path(name_or_path: str | Path) -> tuple[str, Path]:
    """A shipped name or a path -> (problem name, file)."""
    shipped = shipped_problems()
    text = str(name_or_path)
    if text in shipped:
        return text, shipped[text]
    if not text.strip():
        raise ProblemError(f"no problem named: the name is empty (shipped: {', '.join(sorted(shipped))}; or give a "
                           "YAML path)")
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in text:
        return path.stem, path
    plugins = sorted(EQUATIONS.plugins())
    hint = difflib.get_close_matches(text, [*shipped, *plugins], n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    installed = f"; installed kinds: {', '.join(plugins)}" if plugins else ""
    raise ProblemError(
        f"unknown problem '{text}'{suggestion} (shipped: {', '.join(sorted(shipped))}{installed}; or give a YAML path)"
    )


def read_problem(name_or_path: str | Path) -> tuple[str, str, dict[str, Any]]:
    """(name, source, raw mapping) of a shipped problem, a YAML file, or an installed kind with its defaults."""
    text = str(name_or_path)
    if text not in shipped_problems() and not Path(text).expanduser().exists() and text in EQUATIONS.plugins():
        return text, f"<{EQUATIONS.origin(text)}>", {"equation": {"kind": text}}
    name, path = resolve_path(name_or_path)
    return name, str(path), read_yaml(path)


# ---------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[str, Any]:
    """'section.key=value' -> ('section.key', value parsed as a YAML scalar, list or mapping)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ProblemError(f"--set {text!r}: expected key=value, e.g. equation.dim=50")
    try:
        parsed = yaml.load(value, Loader=_UniqueKeyLoader) if value.strip() else None  # noqa: S506
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProblemError(f"--set {key}: cannot parse value {value!r} as YAML ({problem})") from None
    return key, parsed


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], source: str,
                    origin: str = "overrides") -> dict[str, Any]:
    """Set dotted keys on a copy of the raw mapping; sections must exist in the schema (errors name the key
    after ``origin``: 'hjb.yaml: --set foo.x: ...' from the CLI)."""
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        where = f"{source}: {origin} {dotted}"
        if parts[0] not in SECTIONS:
            # a key given without its section (iterations=10) gets the section, else the nearest section's name
            owner = next((section for section, keys in (("solver", SolverSettings.model_fields),
                                                        ("equation", Equation.model_fields),
                                                        ("reference", Reference.model_fields)) if parts[0] in keys),
                         None)
            hint = [owner] if owner else difflib.get_close_matches(parts[0], SECTIONS, n=1)
            suggestion = (f"; did you mean '{owner}.{dotted}'?" if owner else
                          f"; did you mean '{'.'.join([hint[0], *parts[1:]])}'?" if hint else "")
            raise ProblemError(f"{where}: unknown section '{parts[0]}'{suggestion} (known: {', '.join(SECTIONS)})")
        if len(parts) < 2 or not all(parts):
            raise ProblemError(f"{where}: expected section.key, e.g. {parts[0]}.{_EXAMPLE_KEY[parts[0]]}=...")
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ProblemError(f"{where}: '{'.'.join(parts[:depth + 1])}' is {_describe(child)}, not a mapping")
            node = child
        node[parts[-1]] = value
        if len(parts) >= 2 and parts[-2] == "learning_rate" and parts[-1] in _ONE_OF_TWO:
            node.pop(_ONE_OF_TWO[parts[-1]], None)  # the schedule's changes in the form just set, not both
    return raw


#: a learning-rate schedule gives its changes in one of two forms: a dotted --set of one replaces the other
_ONE_OF_TWO = {"boundaries": "fractions", "fractions": "boundaries"}


_EXAMPLE_KEY = {"equation": "dim", "solver": "batch_size", "reference": "value", "presets": "NAME.iterations"}


# ---------------------------------------------------------------------------- validation
def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_branch_tag(part: Any) -> bool:
    """pydantic's union-branch labels in an error location ('float', 'list[int]', 'PiecewiseRate')."""
    return isinstance(part, str) and (part[:1].isupper() or "[" in part or part in ("float", "int", "str", "bool"))


def _split_loc(loc: tuple[Any, ...], data: Any) -> tuple[list[Any], list[str], Any]:
    """(keys, union-branch tags, the value where the first tag applies) of an error location.

    A part found in the data is a key (a param named 'K' too); an absent one that looks like a branch label is a tag.
    """
    keys: list[Any] = []
    tags: list[str] = []
    node, at_tag = data, None
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int):
            keys.append(part)
            node = node[part] if isinstance(node, dict) or -len(node) <= part < len(node) else None
        elif _is_branch_tag(part):
            at_tag = node if not tags else at_tag
            tags.append(part)
        else:
            keys.append(part)
            node = None
    return keys, tags, at_tag


def _branch_matches(err: dict[str, Any], data: Any) -> bool:
    """Whether an error comes from the union branch that fits the type of the value it is about."""
    _, tags, value = _split_loc(err["loc"], data)
    if not tags:
        return True
    tag = tags[0]
    model_branch = tag[:1].isupper() or tag.startswith("function-")
    if isinstance(value, dict):
        return model_branch
    if isinstance(value, (list, tuple)):
        return tag.startswith(("list", "tuple"))
    return not model_branch and not tag.startswith(("list", "tuple"))


def _dotted(section: str, loc: list[Any]) -> str:
    key = section
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


class _Context:
    """Where a mapping came from: the file, the dotted keys that overrides set, and what to call the overrides."""

    def __init__(self, source: str, overridden: frozenset[str] = frozenset(), origin: str = "overrides"):
        self.source = source
        self.overridden = overridden
        self.origin = origin

    def error(self, key: str, text: str) -> ProblemError:
        """'<file>: <key> [(from overrides)]: <text>' as a ProblemError."""
        base = key.split("[")[0]
        from_set = any(base == o or base.startswith(o + ".") or o.startswith(base + ".") for o in self.overridden)
        return ProblemError(f"{self.source}: {key}{f' (from {self.origin})' if from_set else ''}: {text}")


def _keys(model: type[BaseModel]) -> list[str]:
    """The keys a file may give: each field's alias where it has one, excluded (derived) fields left out."""
    return [info.alias or name for name, info in model.model_fields.items() if not info.exclude]


def _models_in(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """(union tag, model) for each model an annotation admits: a model, or a union of (tagged) models."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation.__name__, annotation)]
    if typing.get_origin(annotation) is Annotated:
        base, *meta = typing.get_args(annotation)
        tag = next((m.tag for m in meta if isinstance(m, Tag)), None)
        return [(tag or name, found) for name, found in _models_in(base)]
    return [found for arg in typing.get_args(annotation) for found in _models_in(arg)]


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model holding the last key of a raw error location, through nested models and union branches."""
    parts, current, i = list(loc[:-1]), model, 0
    while i < len(parts):
        fields = {info.alias or name: info for name, info in current.model_fields.items()}
        if parts[i] not in fields:
            return model
        tag = parts[i + 1] if i + 1 < len(parts) and _is_branch_tag(parts[i + 1]) else None
        branches = [found for name, found in _models_in(fields[parts[i]].annotation)
                    if tag in (None, name) or tag.endswith(f", {name}]")]  # 'function-after[_check(), Model]'
        if len(branches) != 1:
            return model
        current, i = branches[0], i + (2 if tag else 1)
    return current


def _format_error(ctx: _Context, section: str, model: type[BaseModel], exc: ValidationError,
                  data: dict[str, Any]) -> ProblemError:
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")  # a typo first
    first = errors[0]
    err = next((e for e in errors if e["loc"][:1] == first["loc"][:1] and _branch_matches(e, data)), first)
    loc = _split_loc(err["loc"], data)[0]
    key = _dotted(section, loc)
    if err["type"] == "extra_forbidden":
        fields = _keys(_model_at(model, err["loc"]))
        hint = difflib.get_close_matches(str(err["loc"][-1]), fields, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        return ctx.error(key, f"unknown key{suggestion} (known: {', '.join(fields)})")
    message = err["msg"].removeprefix("Value error, ")
    if not loc:  # a check across fields: its message starts with the field it blames (or a key inside it)
        field_name = message.split(":")[0].split(" ")[0]
        if field_name.split(".")[0].split("[")[0] in (*_keys(model), *model.model_fields):
            key = f"{section}.{field_name}"
            message = message.removeprefix(f"{field_name}: ")
        return ctx.error(key, message)
    inner = message.split(":")[0]
    if ":" in message and isinstance(err.get("input"), dict) and inner.split(".")[0].split("[")[0] in err["input"]:
        # a check inside a mapping (the process's) that names its own key: that key, not the whole mapping again
        return ctx.error(f"{key}.{inner}", message.removeprefix(f"{inner}: "))
    given = f" (got {_describe(err['input'])})" if "input" in err and err["type"] != "missing" else ""
    if err["type"] == "int_parsing" and _is_float_text(err.get("input")):  # YAML 1.1 reads 1e9 as text
        given += f"; write it with all its digits ({float(err['input']):.0f}), as an integer"
    return ctx.error(key, f"{message}{given}")


def _is_float_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and float(value).is_integer()
    except ValueError:
        return False


class _Direct(_Context):
    """A model built in Python: 'HJB: dim: <text>'."""

    def error(self, key: str, text: str) -> ProblemError:
        key = key.lstrip(".")
        return ProblemError(f"{self.source}: {key}: {text}" if key else f"{self.source}: {text}")


def direct_error(model: type[BaseModel], exc: ValidationError, data: dict[str, Any]) -> ProblemError:
    """The one-line error of ``model(**data)`` (an equation or settings built in Python), as a file's would read."""
    return _format_error(_Direct(model.__name__), "", model, exc, data)


def _validate(model: type[BaseModel], data: Any, ctx: _Context, section: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ctx.error(section, f"expected a mapping, got {_describe(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _format_error(ctx, section, model, exc, data) from None


def _build(raw: dict[str, Any], name: str, source: str, overridden: frozenset[str] = frozenset(),
           origin: str = "overrides") -> Problem:
    ctx = _Context(source, overridden, origin)
    unknown = [k for k in raw if k not in SECTIONS]
    if unknown:
        hint = difflib.get_close_matches(str(unknown[0]), SECTIONS, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ctx.error(str(unknown[0]), f"unknown section{suggestion} (known: {', '.join(SECTIONS)})")
    eq_raw = raw.get("equation")
    if eq_raw is None:
        raise ctx.error("equation", f"missing section (a mapping with at least kind: one of {', '.join(EQUATIONS)})")
    if not isinstance(eq_raw, dict):
        raise ctx.error("equation", f"expected a mapping with at least 'kind', got {_describe(eq_raw)}")
    kind = eq_raw.get("kind")
    if not (isinstance(kind, str) and kind in EQUATIONS):
        hint = difflib.get_close_matches(str(kind), EQUATIONS, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        what = "missing" if kind is None else f"unknown kind {_describe(kind)}"
        raise ctx.error("equation.kind", f"{what}{suggestion} (known: {', '.join(EQUATIONS)})")
    try:
        equation = _validate(EQUATIONS[kind], eq_raw, ctx, "equation")
    except ProblemError as exc:
        if "equation.kind" in overridden and "unknown key" in str(exc):  # the file's keys are its own kind's
            raise ProblemError(f"{exc}; {ctx.origin} equation.kind={kind} keeps the file's other equation keys: start "
                               f"from a file of kind {kind} (bsde show PROBLEM > my.yaml, then edit it)") from None
        raise
    solver = _validate(SolverSettings, raw.get("solver"), ctx, "solver")
    if solver.measure == "controlled" and not equation.controllable:
        raise ctx.error("solver.measure", f"'controlled' needs a driver -(c/2)|z|^2 + (linear in z) that does not "
                                          f"use y, and a steerable process (Brownian or GBM); '{kind}' has none "
                                          "(use 'plain' or 'auto')")
    if solver.region is not None and (misfit := region_problem(solver.region, equation)) is not None:
        raise ctx.error(*misfit)
    reference = _validate(Reference, raw.get("reference"), ctx, "reference")
    presets = raw.get("presets") or {}
    if not isinstance(presets, dict):
        raise ctx.error("presets", f"expected a mapping of name -> solver settings, got {_describe(presets)}")
    for preset, overlay in presets.items():
        if not isinstance(overlay, dict):
            raise ctx.error(f"presets.{preset}", f"expected a mapping of solver settings, got {_describe(overlay)}")
        merged = {**solver.model_dump(), **overlay}
        _validate(SolverSettings, merged, ctx, f"presets.{preset}")
    return Problem(name, equation, solver, reference, presets, source)


def _preset_overlay(presets: Mapping[str, dict[str, Any]], name: str, source: str) -> dict[str, Any]:
    """The solver overlay of a named preset; a one-line error listing the known ones otherwise."""
    if name not in presets:
        known = ", ".join(sorted(presets)) or "none"
        raise ProblemError(f"{source}: preset '{name}' not defined (presets: {known})")
    return copy.deepcopy(presets[name])


def load_problem(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None, *,
                 preset: str | None = None, overrides_from: str = "overrides") -> Problem:
    """Load a shipped problem (by name) or a YAML file, apply a preset and dotted overrides, validate.

    Later layers win: the file's solver section, then the named ``preset`` overlay from its
    ``presets`` section, then ``overrides`` (so ``solver.iterations=100`` with the ``fast`` preset
    runs 100 iterations). Overrides of ``presets.NAME.key`` change the preset before it is applied.
    Errors about a key that an override set say "(from overrides)" (``overrides_from`` names them otherwise:
    the CLI's "--set"). When an override changes the equation, the file's reference value is dropped (it
    belongs to the file's equation).
    """
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ArgumentError(f"overrides: expected a mapping of dotted keys to values, e.g. {{'equation.dim': 10}}, "
                            f"got {type(overrides).__name__}")
    name, source, raw = read_problem(name_or_path)
    overrides = dict(overrides or {})
    overridden = frozenset(map(str, overrides))
    # the file with the overrides, every section and every preset checked: errors name the file's keys
    problem = _build(apply_overrides(raw, overrides, source, overrides_from), name, source, overridden, overrides_from)
    if preset is not None:
        layered = copy.deepcopy(raw)
        solver = layered.get("solver") or {}  # a mapping: the build above checked it
        layered["solver"] = {**solver, **_preset_overlay(problem.presets, preset, source)}
        problem = _build(apply_overrides(layered, overrides, source, overrides_from), name,
                         f"{source} (preset {preset})", overridden, overrides_from)
    if overrides and not any(str(k).startswith("reference.") for k in overrides):
        # the file's reference value belongs to the file's equation: drop it when the equation changed
        try:
            same = _same_equation(_build(raw, name, source).equation, problem.equation)
        except ProblemError:  # the file alone is invalid; the overrides repaired it
            same = False
        if not same and problem.reference.value is not None:
            problem = replace(problem, reference=Reference(source=""))
    if "reference.value" in overrides:  # the file's source and stderr were about the file's value, not this one
        kept = {key: getattr(problem.reference, key) for key in ("source", "stderr") if f"reference.{key}" in overrides}
        problem = replace(problem, reference=Reference(
            value=problem.reference.value, **{"source": "reference.value override", **kept}))
    return problem


def _same_equation(a: Equation, b: Equation) -> bool:
    """Equal equations, a number x0 and the list of dim copies of it counting as the same start."""
    return a == b or (type(a) is type(b) and a.x_start == b.x_start
                      and a.model_copy(update={"x0": 0.0}) == b.model_copy(update={"x0": 0.0}))


def problem_from_dict(raw: Mapping[str, Any], name: str | None = None) -> Problem:
    """Build a problem from an in-memory mapping of the same shape as the YAML; ``name`` defaults to the equation's
    kind (QA: every such problem was "custom", a max_call's too)."""
    if not isinstance(raw, Mapping):
        raise ProblemError(f"<memory>: expected a mapping, got {_describe(raw)}")
    if name is None:
        equation = raw.get("equation")
        kind = equation.get("kind") if isinstance(equation, Mapping) else None
        name = kind if isinstance(kind, str) and kind else "custom"
    return _build(dict(raw), name, "<memory>")


def as_problem(problem: Problem | Equation, solver: SolverSettings | Mapping[str, Any] | None = None, *,
               name: str | None = None) -> Problem:
    """A :class:`Problem` from a problem or an :class:`Equation` instance (default solver settings), with
    ``solver``: a mapping of solver keys laid over its solver section, or complete settings replacing it."""
    if isinstance(problem, Problem):
        equation, base, reference, presets, source = (problem.equation, problem.solver, problem.reference,
                                                      problem.presets, problem.source)
        name = name or problem.name
    elif isinstance(problem, Equation):
        equation, base, reference, presets, source = problem, SolverSettings(), Reference(), {}, "<python>"
        name = name or getattr(problem, "name", None) or problem.kind
    elif isinstance(problem, (str, PathLike)):  # QA: bsde.solve("max_call")
        raise ProblemError(f"expected a bsde.Problem or a bsde.Equation instance, got the {type(problem).__name__} "
                           f"{str(problem)!r}: load it first, bsde.load_problem({str(problem)!r})")
    else:
        raise ProblemError(f"expected a bsde.Problem or a bsde.Equation instance, got {type(problem).__name__}")
    ctx = _Context(source)
    if isinstance(solver, SolverSettings):
        base = solver
    elif solver is not None:
        if not isinstance(solver, Mapping):
            raise ctx.error("solver", f"expected solver settings or a mapping, got {_describe(solver)}")
        base = _validate(SolverSettings, {**base.model_dump(), **solver}, ctx, "solver")
    if base.measure == "controlled" and not equation.controllable:
        raise ctx.error("solver.measure", f"'controlled' needs a driver -(c/2)|z|^2 + (linear in z) that does not "
                                          f"use y, and a steerable process; '{equation.kind}' has none")
    if base.region is not None and (misfit := region_problem(base.region, equation)) is not None:
        raise ctx.error(*misfit)
    return Problem(name, equation, base, reference, presets, source)
