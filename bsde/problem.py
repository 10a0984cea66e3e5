"""Problems: YAML files with ``equation``, ``solver``, ``reference`` and ``presets`` sections.

``load_problem(name_or_path, overrides)`` reads a shipped problem by name or any YAML file,
applies dotted ``section.key=value`` overrides, validates everything and returns a
:class:`Problem`. Every failure is a :class:`ProblemError` whose one-line message names the
file and the dotted key.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bsde.equations import EQUATIONS, Equation
from bsde.errors import ProblemError
from bsde.settings import SolverSettings

SECTIONS = ("equation", "solver", "reference", "presets")


class Reference(BaseModel):
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
        """This problem with the named solver overlay applied."""
        if name not in self.presets:
            known = ", ".join(sorted(self.presets)) or "none"
            raise ProblemError(f"{self.source}: preset '{name}' not defined (presets: {known})")
        raw = self.to_dict()
        raw["solver"].update(self.presets[name])
        return _build(raw, self.name, f"{self.source} (preset {name})")


# ---------------------------------------------------------------------------- reading YAML
class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects duplicate mapping keys instead of keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file as a mapping, through a safe loader; one-line errors for every failure."""
    if not path.exists():
        raise ProblemError(f"{path}: no such file")
    if path.is_dir():
        raise ProblemError(f"{path}: is a directory, expected a YAML file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ProblemError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProblemError(f"{path}: YAML error{where}: {problem}") from None
    if data is None:
        raise ProblemError(f"{path}: empty file, expected a mapping with an 'equation' section")
    if not isinstance(data, dict):
        raise ProblemError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
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
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in text:
        return path.stem, path
    hint = difflib.get_close_matches(text, shipped, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    raise ProblemError(
        f"unknown problem '{text}'{suggestion} (shipped: {', '.join(sorted(shipped))}; or give a YAML path)"
    )


# ---------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[str, Any]:
    """'section.key=value' -> ('section.key', value parsed as a YAML scalar or list)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ProblemError(f"--set {text!r}: expected key=value, e.g. equation.dim=50")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ProblemError(f"--set {key}: cannot parse value {value!r}") from None
    return key, parsed


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Set dotted keys on a copy of the raw mapping; sections must exist in the schema."""
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if parts[0] not in SECTIONS or len(parts) < 2 or not all(parts):
            hint = difflib.get_close_matches(parts[0], SECTIONS, n=1)
            suggestion = f"; did you mean '{hint[0]}.{'.'.join(parts[1:])}'?" if hint and len(parts) > 1 else ""
            raise ProblemError(
                f"{source}: override '{dotted}': keys look like section.key with section one of "
                f"{', '.join(SECTIONS)}{suggestion}"
            )
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ProblemError(f"{source}: override '{dotted}': '{part}' is not a mapping")
            node = child
        node[parts[-1]] = value
    return raw


# ---------------------------------------------------------------------------- validation
def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_error(source: str, section: str, model: type[BaseModel], exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and p in ("float", "PiecewiseRate", "list[float]"))]
    key = ".".join([section, *loc]) if loc else section
    if err["type"] == "extra_forbidden":
        fields = list(model.model_fields)
        hint = difflib.get_close_matches(str(err["loc"][-1]), fields, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"{source}: {key}: unknown key{suggestion} (known: {', '.join(fields)})"
    message = err["msg"].removeprefix("Value error, ")
    if not loc:  # a check across fields: its message starts with the field it blames
        field_name = message.split(":")[0].split(" ")[0]
        if field_name in model.model_fields:
            key = f"{section}.{field_name}"
            message = message.removeprefix(f"{field_name}: ")
        return f"{source}: {key}: {message}"
    given = f" (got {_describe(err['input'])})" if "input" in err and err["type"] != "missing" else ""
    return f"{source}: {key}: {message}{given}"


def _validate(model: type[BaseModel], data: Any, source: str, section: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProblemError(f"{source}: {section}: expected a mapping, got {_describe(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProblemError(_format_error(source, section, model, exc)) from None


def _build(raw: dict[str, Any], name: str, source: str) -> Problem:
    unknown = [k for k in raw if k not in SECTIONS]
    if unknown:
        hint = difflib.get_close_matches(str(unknown[0]), SECTIONS, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ProblemError(f"{source}: {unknown[0]}: unknown section{suggestion} (known: {', '.join(SECTIONS)})")
    eq_raw = raw.get("equation")
    if not isinstance(eq_raw, dict):
        raise ProblemError(f"{source}: equation: missing section (needs at least 'kind')")
    kind = eq_raw.get("kind")
    if kind not in EQUATIONS:
        hint = difflib.get_close_matches(str(kind), EQUATIONS, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ProblemError(
            f"{source}: equation.kind: unknown kind {_describe(kind)}{suggestion} (known: {', '.join(EQUATIONS)})"
        )
    equation = _validate(EQUATIONS[kind], eq_raw, source, "equation")
    solver = _validate(SolverSettings, raw.get("solver"), source, "solver")
    reference = _validate(Reference, raw.get("reference"), source, "reference")
    presets = raw.get("presets") or {}
    if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
        raise ProblemError(f"{source}: presets: expected a mapping of name -> solver settings")
    for preset, overlay in presets.items():
        merged = {**solver.model_dump(), **overlay}
        _validate(SolverSettings, merged, source, f"presets.{preset}")
    return Problem(name, equation, solver, reference, presets, source)


def load_problem(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Problem:
    """Load a shipped problem (by name) or a YAML file, apply dotted overrides, validate."""
    name, path = resolve_path(name_or_path)
    raw = read_yaml(path)
    overrides = dict(overrides or {})
    changed = apply_overrides(raw, overrides, str(path))
    problem = _build(changed, name, str(path))
    if overrides and not any(k.startswith("reference.") for k in overrides):
        # the file's reference value belongs to the file's equation: drop it when the equation changed
        if _build(raw, name, str(path)).equation != problem.equation and problem.reference.value is not None:
            problem = replace(problem, reference=Reference(source=""))
    return problem


def problem_from_dict(raw: Mapping[str, Any], name: str = "custom") -> Problem:
    """Build a problem from an in-memory mapping of the same shape as the YAML."""
    if not isinstance(raw, Mapping):
        raise ProblemError(f"<memory>: expected a mapping, got {_describe(raw)}")
    return _build(dict(raw), name, "<memory>")
