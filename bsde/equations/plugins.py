"""Equation kinds from installed packages: the entry-point group ``bsde.equations``.

A package declares, in its pyproject.toml,

    [project.entry-points."bsde.equations"]
    my_heat = "my_package.heat:Heat"        # kind name = "module:Equation subclass"

and ``bsde list`` / ``show`` / ``solve`` / ``reference`` see the kind ``my_heat`` (a YAML file with
``kind: my_heat``, or the name alone for its defaults). Names are read from the installed metadata
without importing anything; a plugin's module is imported when its kind is first used. Built-in kinds
win over plugins of the same name.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

from bsde.errors import ProblemError

if TYPE_CHECKING:
    from bsde.equations.base import Equation

GROUP = "bsde.equations"


def entry_points() -> dict[str, metadata.EntryPoint]:
    """kind -> entry point of the group, from the installed distributions' metadata (nothing imported)."""
    found: dict[str, metadata.EntryPoint] = {}
    for point in metadata.entry_points(group=GROUP):
        found.setdefault(point.name, point)
    return found


def _origin(point: metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    package = f" from {dist.name}" if dist is not None and getattr(dist, "name", None) else ""
    return f"entry point '{point.name} = {point.value}'{package}"


def load_kind(point: metadata.EntryPoint) -> type[Equation]:
    """The equation class an entry point names; a one-line ProblemError if it cannot be imported or is no
    Equation subclass whose ``kind`` is the entry point's name."""
    from bsde.equations.base import Equation

    try:
        loaded = point.load()
    except Exception as exc:  # noqa: BLE001 - a third-party import: any failure is reported the same way
        raise ProblemError(f"equation kind '{point.name}': cannot load {_origin(point)}: "
                           f"{type(exc).__name__}: {exc}") from None
    if not (isinstance(loaded, type) and issubclass(loaded, Equation)):
        raise ProblemError(f"equation kind '{point.name}': {_origin(point)} is {loaded!r}, not a bsde.Equation "
                           "subclass")
    kind = loaded.model_fields["kind"].default if "kind" in loaded.model_fields else None
    if kind != point.name:
        raise ProblemError(f"equation kind '{point.name}': {_origin(point)} has kind {kind!r}; its field "
                           f"'kind' must default to '{point.name}'")
    return loaded


class Registry(MutableMapping):
    """kind -> equation class: the built-in (and programmatically set) kinds, then the entry points' kinds,
    each plugin class imported on first use."""

    def __init__(self, builtin: dict[str, type[Equation]]):
        self._kinds = dict(builtin)
        self._points: dict[str, metadata.EntryPoint] | None = None
        self._loaded: dict[str, type[Equation]] = {}

    def plugins(self) -> dict[str, metadata.EntryPoint]:
        """The entry points of kinds that no built-in kind shadows (read once; ``refresh`` reads again)."""
        if self._points is None:
            self._points = entry_points()
        return {k: p for k, p in self._points.items() if k not in self._kinds}

    def refresh(self) -> None:
        """Forget the entry points read so far and the plugin classes loaded (after installing a package)."""
        self._points, self._loaded = None, {}

    def origin(self, kind: str) -> str | None:
        """Where a plugin kind comes from ('entry point ... from package'), None for a built-in kind."""
        point = None if kind in self._kinds else self.plugins().get(kind)
        return _origin(point) if point is not None else None

    def __getitem__(self, kind: str) -> type[Equation]:
        if kind in self._kinds:
            return self._kinds[kind]
        if kind not in self._loaded:
            point = self.plugins().get(kind)
            if point is None:
                raise KeyError(kind)
            self._loaded[kind] = load_kind(point)
        return self._loaded[kind]

    def __contains__(self, kind: Any) -> bool:
        return kind in self._kinds or (isinstance(kind, str) and kind in self.plugins())

    def __setitem__(self, kind: str, cls: type[Equation]) -> None:
        self._kinds[kind] = cls

    def __delitem__(self, kind: str) -> None:
        del self._kinds[kind]

    def __iter__(self) -> Iterator[str]:
        yield from self._kinds
        yield from self.plugins()

    def __len__(self) -> int:
        return len(self._kinds) + len(self.plugins())

    def __repr__(self) -> str:
        return f"Registry({list(self)})"
