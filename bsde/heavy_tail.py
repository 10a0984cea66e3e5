"""A sample too heavy-tailed for Monte Carlo: one draw carries much of the sample variance.

share = max_i (v_i - mean)^2 / sum_i (v_i - mean)^2: about 2 ln(n) / n for a light tail over n draws, O(1) where
the variance (or the mean) of v is not finite. Used on g(X_T) by the driver-free baseline and the Monte Carlo references.
"""

from __future__ import annotations

import math

#: one draw carrying more than this share of the sample variance marks a tail too heavy for Monte Carlo (over 2^16
#: paths, five seeds: a lognormal of log-spread 1 had its largest path at 1-2%, of log-spread 2 at 17-78%; 1 / W_T,
#: whose mean is not finite, at 30-97%; a normal at 0.03%)
HEAVY_TAIL_SHARE = 0.25


def largest_share(high: float, low: float, mean: float, scatter: float) -> float:
    """max_i (v_i - mean)^2 / scatter from the sample's extremes, mean and scatter sum_i (v_i - mean)^2; 0 where the
    scatter is not finite or the sample constant, 1 where the sample spreads but its squares underflow to a scatter of
    0 (QA: the Barenblatt value e^1000 at sigma 10, T = 10 sampled as 1.1e-304 +- 0: its draws are e^-700 and less)."""
    if scatter == 0 and high > low:
        return 1.0
    if not (scatter > 0 and math.isfinite(scatter)):
        return 0.0
    return min(max(high - mean, mean - low) ** 2 / scatter, 1.0)


def heavy_tail_warning(share: float, draws: int, what: str = "sampled paths") -> str | None:
    """A warning where one of ``draws`` (``what``) carries over HEAVY_TAIL_SHARE of the sample variance of g(X_T) (QA:
    1 / (x_1 - 0.5) at x0 = 0.5, whose mean is not finite, had 'more time steps or iterations may help'); else None."""
    if not share > HEAVY_TAIL_SHARE:
        return None
    return (f"g(X_T) has a heavy tail: one of {draws} {what} carries {share:.0%} of its sample variance, so its "
            "mean or variance may not be finite (a pole of equation.terminal where the paths go, or growth faster "
            "than their law decays); y0, its error estimate and Monte Carlo references are not to be trusted then, "
            "and no solver setting mends that: rescale or guard the terminal condition")
