"""Solver settings: the training hyper-parameters of one solve (no YAML here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, field_validator, model_serializer, model_validator

from bsde.no_bools import NoBoolNumbers
from bsde.region import Region


if TYPE_CHECKING:
    import torch


class _Strict(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PiecewiseRate(_Strict):
    """Learning rate values[k] from the k-th change on; the changes at iterations (``boundaries``) or at
    ``fractions`` of the run, which move with solver.iterations (0.5 of 2000 iterations: iteration 1000)."""

    boundaries: list[int] | None = Field(None, description="iterations where the rate changes, increasing")
    fractions: list[float] | None = Field(None, description="or: fractions of solver.iterations where the rate "
                                          "changes, increasing, in (0, 1)")
    values: list[float] = Field(description="one more rate than changes")

    @model_validator(mode="after")
    def _check(self) -> PiecewiseRate:
        if (self.boundaries is None) == (self.fractions is None):
            raise ValueError("give the changes as boundaries (iterations) or as fractions (of solver.iterations), "
                             "one of the two")
        changes = self.boundaries if self.boundaries is not None else self.fractions
        name = "boundaries" if self.boundaries is not None else "fractions"
        if len(self.values) != len(changes) + 1:
            raise ValueError(f"values needs len({name}) + 1 = {len(changes) + 1} entries, got {len(self.values)}")
        if any(v <= 0 for v in self.values):
            raise ValueError(f"values: learning rates must be positive, got {self.values}")
        if any(b <= a for a, b in zip(changes, changes[1:])) or any(b < 0 for b in changes):
            raise ValueError(f"{name} must be non-negative and increasing, got {changes}")
        if self.fractions is not None and any(not 0 < f < 1 for f in self.fractions):
            raise ValueError(f"fractions must lie strictly between 0 and 1, got {self.fractions}")
        return self

    @model_serializer(mode="wrap")
    def _one_of_the_two(self, handler):
        """Dumps (bsde show, a saved config) hold the form given, not the other as null."""
        return {k: v for k, v in handler(self).items() if v is not None}

    def boundaries_for(self, iterations: int) -> list[int]:
        """The iterations where the rate changes in a run of ``iterations``: floor(fraction x iterations), each
        at least one after the one before (at least 1)."""
        if self.boundaries is not None:
            return list(self.boundaries)
        boundaries: list[int] = []
        for fraction in self.fractions:
            boundaries.append(max(boundaries[-1] + 1 if boundaries else 1, int(fraction * iterations + 1e-9)))
        return boundaries

    def at(self, iteration: int, iterations: int) -> float:
        """The rate at a 0-based iteration of a run of ``iterations``."""
        return self.values[sum(iteration >= b for b in self.boundaries_for(iterations))]


DEFAULT_RATES = (0.02, 0.005, 0.001)
#: the default schedule: DEFAULT_RATES, stepping down at 50% and 80% of the run (2000 iterations: at 1000 and 1600)
DEFAULT_SCHEDULE = PiecewiseRate(fractions=[0.5, 0.8], values=list(DEFAULT_RATES))


class SolverSettings(_Strict):
    """Deep BSDE training settings (PNAS defaults: batch 64, two hidden layers of dim + 10)."""

    time_steps: int = Field(20, ge=1, description="number N of uniform time steps")
    iterations: int = Field(2000, ge=1, description="Adam steps")
    batch_size: int = Field(64, ge=2, description="paths per Adam step (batch norm needs >= 2)")
    learning_rate: float | PiecewiseRate | None = Field(
        None, description="a number, or {boundaries: [iterations], values} or {fractions: [of iterations], "
        "values}; default {fractions: [0.5, 0.8], values: [0.02, 0.005, 0.001]} (the shipped problems' schedule)"
    )
    hidden: list[int] | None = Field(None, description="hidden layer widths; default twice min(dim, 100) + 10")
    y0_init: tuple[float, float] | Literal["baseline", "zero_z"] = Field(
        "baseline", description="range of the uniform initial guess of y0, or 'baseline': start at the "
        "driver-free value e^{-rT} mean g(X_T) on the validation paths and learn y0 in units of the std of g(X_T) "
        "(for a driver that uses y, at the Z = 0 value where the march from there blows up), or 'zero_z': start at "
        "the Z = 0 value (the y0 whose march with Z = 0 ends nearest g(X_T) on the validation paths), same units"
    )
    z_scale: float | None = Field(
        None, gt=0, description="factor on the networks' output Z; default sqrt(Var g(X_T) / (T dim)), the "
        "per-coordinate size of Z for which E int |Z|^2 dt matches the variance of the terminal value"
    )
    scheme: Literal["euler", "trapezoid"] = Field(
        "trapezoid", description="time stepping of the driver: 'trapezoid' (f at both ends of a step, "
        "Heun predictor for y; second order) or 'euler' (f at the left end, as the paper)"
    )
    measure: Literal["auto", "plain", "controlled"] = Field(
        "auto", description="paths X for training: 'plain' (the forward SDE as given), 'controlled' (from "
        "control_from on, steered by the learned control b = grad_z f(Z); needs a driver quadratic in z without y "
        "and a steerable process, Brownian or GBM) or 'auto' (controlled where the problem allows it, plain "
        "elsewhere)"
    )
    control_from: float = Field(0.5, ge=0, lt=1, description="fraction of the iterations after which "
                                "a controlled measure steers the paths (plain before)")
    shards: int | None = Field(
        None, ge=1, description="fixed shards of each batch, each drawn from its own random stream, so that K "
        "processes (bsde solve --nproc K) reproduce one; must divide batch_size; default: the largest of "
        "8, 4, 2, 1 that divides it"
    )
    region: Region | None = Field(None, description="train u(0, x) for x0 in a box: {low, high, log}; "
                                  "see bsde.region")
    refit: bool | None = Field(None, description="after training, refit Y_0 and Z_0 by least squares on fresh "
                               "paths with the step networks frozen (bsde.refit); default: with a region only")
    refit_paths: int | None = Field(
        None, ge=2, description="fresh paths of the refit; default: as many as training drew, at most 2^19 (over "
        "a region at most 2^17 and 2^24 / (time_steps x dim)). A region's gamma is the second derivative of the "
        "refit's fit, and the paths' noise dominates it: more paths, less noise, in proportional time (a region's "
        "refit keeps 3 dim + 4 numbers per path)")
    dtype: Literal["float32", "float64"] | None = Field(
        None, description="default: float64 on CPU, float32 on CUDA (with TF32 matmuls, see tf32)"
    )
    tf32: bool = Field(True, description="float32 matmuls on CUDA in TensorFloat-32 (float32 range, 10-bit "
                       "mantissa products, float32 sums); no effect on CPU or in float64")
    compile: bool | Literal["reduce-overhead"] = Field(
        False, description="torch.compile (inductor) the training step: forward, backward and the controlled "
        "paths; 'reduce-overhead' also replays them as CUDA graphs on CUDA (where kernel launches dominate, as at "
        "d = 100); pays a one-time compilation (seconds to a minute)")
    valid_size: int = Field(256, ge=2, description="fixed validation paths")
    log_every: int = Field(100, ge=1, description="iterations between validations")

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_mode(cls, value: object) -> object:
        if isinstance(value, bool) or value == "reduce-overhead":
            return value
        raise ValueError("expected true, false or 'reduce-overhead'")

    @field_validator("y0_init", mode="before")
    @classmethod
    def _pair(cls, value: object) -> object:
        if value in ("baseline", "zero_z"):
            return value
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError("expected [low, high], two numbers, 'baseline' or 'zero_z'")
        return value

    @model_validator(mode="after")
    def _check(self) -> SolverSettings:
        if isinstance(self.learning_rate, (int, float)) and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.hidden is not None and any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden: layer widths must be positive, got {self.hidden}")
        if not isinstance(self.y0_init, str) and self.y0_init[0] > self.y0_init[1]:
            raise ValueError(f"y0_init must be [low, high] with low <= high, got {list(self.y0_init)}")
        if self.shards is not None and self.batch_size % self.shards:
            raise ValueError(f"shards ({self.shards}) must divide batch_size ({self.batch_size})")
        if self.refit_paths is not None and not self.refits:
            raise ValueError("refit_paths is set but this solve does not refit (set refit: true, or a region)")
        return self

    @property
    def refits(self) -> bool:
        """Whether a solve refits its start values (``refit``, by default only over a region)."""
        return self.refit if self.refit is not None else self.region is not None

    def rate_at(self, iteration: int) -> float:
        """Learning rate for a 0-based iteration."""
        rate = DEFAULT_SCHEDULE if self.learning_rate is None else self.learning_rate
        return rate.at(iteration, self.iterations) if isinstance(rate, PiecewiseRate) else rate

    def schedule_warning(self) -> str | None:
        """A sentence when a piecewise learning rate changes at or after the last iteration (it never decays there)."""
        rate = self.learning_rate
        if not isinstance(rate, PiecewiseRate) or not rate.boundaries or rate.boundaries[-1] < self.iterations:
            return None  # fractions always change inside the run
        late = [b for b in rate.boundaries if b >= self.iterations]
        return (f"solver.learning_rate: boundaries {late} lie at or beyond solver.iterations = {self.iterations}, "
                f"so the rate ends at {self.rate_at(self.iterations - 1):g}; "
                "give boundaries below it, or fractions of the run (learning_rate: {fractions: [0.5, 0.8], "
                "values: [...]})")

    def shard_count(self) -> int:
        """Shards of each batch: ``shards``, or the largest of 8, 4, 2, 1 that divides ``batch_size``."""
        return self.shards or next(count for count in (8, 4, 2, 1) if self.batch_size % count == 0)

    def widths(self, dim: int) -> list[int]:
        """Hidden widths: the PNAS dim + 10 up to 100-d, then capped so parameters grow linearly in d."""
        return list(self.hidden) if self.hidden is not None else [min(dim, 100) + 10] * 2

    def for_device(self, device_type: str) -> SolverSettings:
        """These settings with the dtype decided: as given, else float32 on 'cuda' and float64 elsewhere."""
        if self.dtype is not None:
            return self
        return self.model_copy(update={"dtype": "float32" if device_type == "cuda" else "float64"})

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype; float64 (the CPU default) while ``dtype`` is not decided (see for_device)."""
        import torch  # here, not at the top: reading a problem must not import torch

        return getattr(torch, self.dtype or "float64")
