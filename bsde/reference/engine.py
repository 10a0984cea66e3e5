"""One entry point: reference(problem, method) dispatches to the method registry.

The registry itself is light: each method's module (torch, scipy) is imported when it runs, so
listing and checking methods (``bsde reference --help``, ``resolve_method``) costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from bsde import arguments
from bsde.equations.base import Equation
from bsde.equations.hjb import HJB
from bsde.equations.pricing import MaxCall
from bsde.errors import ArgumentError, ProblemError, file_of, in_file
from bsde.probing import verify_flags
from bsde.problem import Problem, as_problem
from bsde.processes import GBM, BrownianMotion
from bsde.reference.result import ReferenceResult

if TYPE_CHECKING:
    from bsde.distributed import Group
    from bsde.reference.sampling import Progress

#: (equation, paths, seed, progress, sharding) -> result; sharding: {"shards": S, "group": G} or {} (deterministic
#: methods take none)
Runner = Callable[..., ReferenceResult]


@dataclass(frozen=True)
class Method:
    """A reference method: when it applies, whether it is cheap (< ~5 s at defaults), how to run it."""

    applies: Callable[[Equation], bool]
    cheap: bool
    run: Runner
    #: what the method is, for a report's "source" line
    label: str = ""
    #: why it does not apply, where there is more to say than "not applicable"
    reason: Callable[[Equation], str | None] | None = None
    #: whether it samples (and so can run in shards over processes: ``shards``, ``group``)
    sampled: bool = False


def _declares_closed_form(eq: Equation) -> bool:
    return getattr(eq, "closed_form", None) is not None


def _closed_form_mismatch(eq: Equation) -> str | None:
    from bsde.closed_forms import mismatch

    return mismatch(eq)


def _paths(paths: int | None) -> dict:
    return {} if paths is None else {"paths": paths}


def _exact(eq: Equation, paths: int | None, seed: int, progress: Progress | None) -> ReferenceResult:
    from bsde.reference.exact import exact

    return exact(eq)


def _closed_form(eq: Equation, paths: int | None, seed: int, progress: Progress | None) -> ReferenceResult:
    import time

    from bsde.closed_forms import closed_form_value

    began = time.perf_counter()
    value = closed_form_value(eq)
    return ReferenceResult(value, None, None, "closed-form", None, time.perf_counter() - began,
                           {"closed_form": eq.closed_form.describe()})


def _semi_analytic(eq: Equation, paths: int | None, seed: int, progress: Progress | None) -> ReferenceResult:
    from bsde.reference.semi_analytic import semi_analytic

    return semi_analytic(eq)


def _radial(eq: Equation, paths: int | None, seed: int, progress: Progress | None) -> ReferenceResult:
    from bsde.reference.radial import radial

    return radial(eq)


def _pde1d(eq: Equation, paths: int | None, seed: int, progress: Progress | None) -> ReferenceResult:
    from bsde.reference.pde1d import pde1d

    return pde1d(eq)


def _cole_hopf(eq: Equation, paths: int | None, seed: int, progress: Progress | None, **sharding) -> ReferenceResult:
    from bsde.reference.cole_hopf import cole_hopf

    return cole_hopf(eq, seed=seed, progress=progress, **_paths(paths), **sharding)


def _cole_hopf_applies(eq: Equation) -> bool:
    from bsde.reference.cole_hopf import cole_hopf_lam

    return cole_hopf_lam(eq) is not None


def _girsanov(eq: Equation, paths: int | None, seed: int, progress: Progress | None, **sharding) -> ReferenceResult:
    from bsde.reference.girsanov import girsanov

    return girsanov(eq, seed=seed, progress=progress, **_paths(paths), **sharding)


def _girsanov_applies(eq: Equation) -> bool:
    from bsde.girsanov import girsanov_drift

    return girsanov_drift(eq) is not None


def _monte_carlo(eq: Equation, paths: int | None, seed: int, progress: Progress | None, **sharding) -> ReferenceResult:
    from bsde.reference.monte_carlo import monte_carlo

    return monte_carlo(eq, seed=seed, progress=progress, **_paths(paths), **sharding)


def _mlp(eq: Equation, paths: int | None, seed: int, progress: Progress | None, **sharding) -> ReferenceResult:
    from bsde.reference.mlp import mlp

    return mlp(eq, seed=seed, progress=progress, **({} if paths is None else {"repeats": paths}), **sharding)


def _mlp_reason(eq: Equation) -> str | None:
    """Why MLP does not apply (None where it does): on the Girsanov twin where the driver's z-term is m . z."""
    from bsde.reference.mlp import mlp_equation

    sampled = mlp_equation(eq)
    if sampled is None:
        return "the driver uses z, and not as m . z with a constant m on a Brownian motion or GBM"
    return None if sampled.process.exact else "the process has no exact transition"


def _one_dimensional(eq: Equation) -> bool:
    """dim = 1 with a Brownian or geometric process (what the 1-d PDE solve writes as a PDE)."""
    process = eq.process
    return eq.dim == 1 and (isinstance(process, BrownianMotion) and process.sigma > 0
                            or isinstance(process, GBM) and process.vols(1)[0] > 0)


METHODS: dict[str, Method] = {
    "exact": Method(lambda eq: eq.has_exact_solution, True, _exact, "exact solution"),
    "closed-form": Method(lambda eq: _declares_closed_form(eq) and _closed_form_mismatch(eq) is None, True,
                          _closed_form, "closed form", _closed_form_mismatch),
    "semi-analytic": Method(lambda eq: isinstance(eq, MaxCall) and eq.process.independent or isinstance(eq, HJB),
                            True, _semi_analytic, "semi-analytic formula"),
    "radial": Method(lambda eq: eq.radial_form() is not None, True, _radial, "radial PDE solve"),
    "pde-1d": Method(_one_dimensional, True, _pde1d, "one-dimensional PDE solve",
                     lambda eq: None if _one_dimensional(eq) else f"dim is {eq.dim}, not 1" if eq.dim != 1 else
                     "not a Brownian motion or GBM with a nonzero volatility"),
    "cole-hopf": Method(_cole_hopf_applies, True, _cole_hopf, "Monte Carlo of the Cole-Hopf formula",
                        lambda eq: None if _cole_hopf_applies(eq) else "not a Brownian motion with the driver "
                        "-(lam/2)|z|^2 alone", sampled=True),
    "girsanov": Method(_girsanov_applies, True, _girsanov,
                       "Feynman-Kac Monte Carlo under the drift its z-term adds (Girsanov; the process's own "
                       "without one)",
                       lambda eq: None if _girsanov_applies(eq) else
                       "not a Brownian motion or GBM with a driver -r y + m . z + k(t, x) (a z-term or a source k)",
                       sampled=True),
    "mc": Method(lambda eq: eq.driver_is_linear, True, _monte_carlo, "Monte Carlo of e^{-rT} E g(X_T)",
                 lambda eq: None if eq.driver_is_linear else "the driver is not -r y", sampled=True),
    "mlp": Method(lambda eq: _mlp_reason(eq) is None, False, _mlp, "multilevel Picard iteration", _mlp_reason,
                  sampled=True),
}

#: for "auto": the first applicable, most accurate per unit of time
PREFERENCE = ("exact", "closed-form", "semi-analytic", "radial", "pde-1d", "mc", "girsanov", "mlp", "cole-hopf")


def applicable_methods(problem: Problem, *, declared: bool = True) -> list[str]:
    """Names of the methods that apply to ``problem``, most preferred first (without ``declared``: those
    other than a declared closed form, which is then not checked).

    Raises:
        ProblemError: with ``declared``, the equation declares a closed form that does not fit it (a wrong
            declaration is an error, not a silent fallback).
    """
    eq = problem.equation
    if declared:
        check_declared_closed_form(problem)
    return [name for name in PREFERENCE if (declared or name != "closed-form") and METHODS[name].applies(eq)]


def check_declared_closed_form(problem: Problem) -> None:
    """ProblemError naming the file and key where the problem declares a closed form that does not fit it (its
    payoff differs from the terminal condition, say): a wrong declaration is an error, not a silent fallback."""
    if _declares_closed_form(problem.equation) and (why := _closed_form_mismatch(problem.equation)) is not None:
        error = ProblemError(f"equation.closed_form: cannot be used: {why}")
        raise in_file(error, problem.source) if file_of(problem.source) else ProblemError(f"{problem.name}: {error}")


def cheap_method(problem: Problem) -> str | None:
    """The preferred method that runs in a few seconds at defaults (to run inside ``bsde solve``), if any."""
    return next((name for name in applicable_methods(problem) if METHODS[name].cheap), None)


def why_no_cheap_method(problem: Problem) -> str | None:
    """Why a solve computes no reference for ``problem`` in passing, in words (None where a cheap method applies)."""
    applicable = applicable_methods(problem)
    if any(METHODS[name].cheap for name in applicable):
        return None
    if applicable:
        name = applicable[0]
        return (f"none of the quick methods applies; `bsde reference` (with the same --set) runs {name} "
                f"({METHODS[name].label}), which takes longer")
    return _none_applies(problem)


def _none_applies(problem: Problem) -> str:
    """Why no method applies to ``problem``: each method's own reason, and the file's published value if any."""
    reasons = "; ".join(f"{name}: {why}" for name, entry in METHODS.items()
                        if entry.reason and (why := entry.reason(problem.equation)))
    published = (f"; the file's published value {problem.reference.value:g} is the only reference"
                 if problem.reference.value is not None else "")
    return (f"no reference method applies to '{problem.name}' ({problem.equation.kind})"
            f"{': ' + reasons if reasons else ''}{published}")


def describe(result: ReferenceResult) -> str:
    """Where a value came from, e.g. "radial PDE solve (bsde.reference)" or "... , 16384 paths (bsde.reference)"."""
    label = METHODS[result.method].label if result.method in METHODS else result.method
    paths = f", {result.paths} paths" if result.paths else ""
    measure = f" under {result.details['measure']}" if result.details.get("measure") else ""
    return f"{label}{measure}{paths} (bsde.reference)"


def reference(
    problem: Problem | Equation, method: str = "auto", paths: int | None = None, seed: int = 0,
    progress: Progress | None = None, shards: int | None = None, group: Group | None = None,
) -> ReferenceResult:
    """An independent value of u(0, x0) for ``problem``.

    Args:
        method: "auto" (the preferred applicable method) or one of
            "exact", "closed-form", "mc", "girsanov", "semi-analytic", "cole-hopf", "radial", "pde-1d", "mlp".
        paths: Monte Carlo paths for "mc"/"girsanov"/"cole-hopf", independent repeats for "mlp";
            unused by the deterministic "exact", "semi-analytic", "radial" and "pde-1d".
        seed: seeds the method's own torch.Generator.
        progress: optional callback(done, total).
        shards: split the samples into this many shards, each its own random stream (sampling methods
            only; see :mod:`bsde.reference.shards`): the value depends on the shards, not on who runs them.
        group: the processes (:func:`bsde.distributed.group`) that share out the shards; every one of them
            calls this alike and gets the merged result.

    Raises:
        ProblemError: unknown method, one that does not apply to the problem, flags that disagree
            with the driver, or shards for a deterministic method.
    """
    problem = as_problem(problem)
    seed = arguments.seed(seed)
    paths = arguments.optional_integer("paths", paths, minimum=1)
    shards = arguments.optional_integer("shards", shards, minimum=1)
    verify_flags(problem.equation, problem.source)
    name = resolve_method(problem, method, sampled=shards is not None or group is not None)
    if shards is None and group is not None:
        shards = group.size
    if method != "auto" or shards is not None:
        return _run(problem, name, paths, seed, progress, shards, group)
    # "auto": a deterministic method that fails on this problem (pde-1d's grid reaches states the paths never do,
    # where g or f may not be finite) hands over to the next applicable one, and the result says so
    names = applicable_methods(problem)
    failed: list[str] = []
    for index, name in enumerate(names):
        try:
            result = _run(problem, name, paths, seed, progress, shards, group)
        except ProblemError as exc:
            if METHODS[name].sampled or index + 1 == len(names):
                raise
            failed.append(str(exc) if str(exc).startswith(f"{name}:") else f"{name}: {exc}")
            continue
        return replace(result, details={**result.details, "fallback": failed}) if failed else result
    raise AssertionError("unreachable: resolve_method found an applicable method")


def _run(problem: Problem, name: str, paths: int | None, seed: int, progress: Progress | None, shards: int | None,
         group: Group | None) -> ReferenceResult:
    """Method ``name`` on ``problem`` (in ``shards`` over ``group`` where given)."""
    if shards is None:
        return _finite(problem, METHODS[name].run(problem.equation, paths, seed, progress))
    if not METHODS[name].sampled:
        raise ProblemError(f"method '{name}' is deterministic: only the sampling methods "
                           f"({', '.join(sampling_methods())}) run in shards or over processes")
    return _finite(problem, METHODS[name].run(problem.equation, paths, seed, progress, shards=shards, group=group))


def _finite(problem: Problem, result: ReferenceResult) -> ReferenceResult:
    """``result`` if its value is a finite number; a NaN or infinite value is an error, not a result."""
    if not math.isfinite(result.value):  # named after the file where there is one (QA: 'logzero:' alone)
        raise ProblemError(f"{file_of(problem.source) or problem.name}: the {result.method} reference is "
                           f"{result.value}: the terminal condition or the driver is not finite at the sampled states"
                           + (", or the Picard iteration diverges (a driver steep in y)" if result.method == "mlp"
                              else ""))
    return result


def sampling_methods() -> list[str]:
    """The methods that sample (and so can run in shards, over processes)."""
    return [name for name, method in METHODS.items() if method.sampled]


def resolve_method(problem: Problem, method: str = "auto", *, sampled: bool = False) -> str:
    """The method ``reference`` would run: "auto" resolved (with ``sampled``, as in shards or over processes, to the
    preferred sampling method), unknown or inapplicable ones refused.

    Raises:
        ProblemError: unknown method, or one that does not apply to the problem (or no sampling one, ``sampled``).
    """
    if not isinstance(method, str):
        raise ArgumentError(f"method: expected a method name, got {arguments.describe(method)}")
    # a closed form declared but not fitting is an error for the methods that would use it; another method
    # asked for by name (mc, to compare with) still runs
    applicable = applicable_methods(problem, declared=method in ("auto", "closed-form"))
    if method == "auto":
        if not applicable:
            raise ProblemError(_none_applies(problem))
        if not sampled:
            return applicable[0]
        spread = [name for name in applicable if METHODS[name].sampled]
        if not spread:
            raise ProblemError(f"no sampling method applies to '{problem.name}' ({problem.equation.kind}) to run in "
                               f"shards or over processes; '{applicable[0]}' (deterministic) runs in one")
        return spread[0]
    if method not in METHODS:
        raise ProblemError(f"unknown reference method '{method}' (known: auto, {', '.join(METHODS)})")
    if method not in applicable:
        reason = METHODS[method].reason(problem.equation) if METHODS[method].reason else None
        because = f" ({reason})" if reason else ""
        raise ProblemError(
            f"method '{method}' does not apply to '{problem.name}' ({problem.equation.kind}){because}; "
            f"applicable: {', '.join(applicable) or 'none'}"
        )
    return method
