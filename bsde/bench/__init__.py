"""``bsde bench``: speed, batched-vs-loop, time to accuracy and scale, in one report. Never prints.

>>> from bsde.bench import BenchOptions, run_bench
>>> report = run_bench(BenchOptions(device="cpu", quick=True))
>>> report.speed[0].timing.median_s  # seconds per training iteration, 100-d HJB in float64

:mod:`bsde.bench.run` runs everything; the measurements live in :mod:`bsde.bench.cases` (speed,
batched vs per-step), :mod:`bsde.bench.accuracy` (time to accuracy) and :mod:`bsde.bench.worker`
(scale, one subprocess per case); :mod:`bsde.bench.report` turns a report into tables. The names
below are imported on first use, so ``python -m bsde.bench.worker`` loads only what a scale case needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["BenchOptions", "BenchReport", "run_bench"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'bsde.bench' has no attribute '{name}'")
    return getattr(importlib.import_module("bsde.bench.run"), name)


if TYPE_CHECKING:
    from bsde.bench.run import BenchOptions, BenchReport, run_bench
