"""Monte Carlo in shards: merged moments equal one pass over the same samples; shard streams are fixed."""

from __future__ import annotations

import math

import pytest
import torch

import bsde
from bsde.errors import ProblemError
from bsde.reference.mlp import mlp
from bsde.reference.sampling import antithetic_moments
from bsde.reference.shards import each_shard, merge, shard_generator, shard_sizes, sharded_moments


def columns(normals: torch.Tensor) -> torch.Tensor:
    """Two correlated, skewed columns with a large mean (where a naive one-pass covariance would cancel)."""
    first = 1e3 + normals[:, 0].exp()
    return torch.stack([first, first * normals[:, 1] + normals[:, 2] ** 2], dim=-1)


def test_merged_moments_equal_one_pass_over_the_same_shards():
    sizes = shard_sizes(3001, 4)
    assert sizes == [751, 750, 750, 750]
    pairs = []  # the antithetic pair averages each shard draws, recomputed here from the shards' own streams
    for shard, count in enumerate(sizes):
        normals = torch.randn(count, 3, generator=shard_generator(5, shard), dtype=torch.float64)
        pairs.append(0.5 * (columns(normals) + columns(-normals)))
    everything = torch.cat(pairs)
    direct_mean = everything.mean(0)
    direct_cov = torch.cov(everything.T)  # two-pass, unbiased
    merged = sharded_moments(columns, 2 * 3001, 3, seed=5, shards=4)
    assert merged.n == 3001
    torch.testing.assert_close(merged.mean, direct_mean, rtol=1e-13, atol=0)
    torch.testing.assert_close(merged.cov, direct_cov, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(merged.high, everything.amax(0), rtol=1e-15, atol=0)  # the extremes (heavy tails)
    torch.testing.assert_close(merged.low, everything.amin(0), rtol=1e-15, atol=0)


def test_merge_of_one_part_is_that_part():
    part = antithetic_moments(columns, 200, 3, generator=torch.Generator().manual_seed(0))
    alone = merge([part])
    assert alone.n == part.n and torch.equal(alone.mean, part.mean) and torch.allclose(alone.cov, part.cov)


def test_shard_results_come_back_in_shard_order():
    seen = each_shard(lambda shard, size, generator: (shard, size, float(torch.rand((), generator=generator))),
                      [3, 2, 2], seed=1)
    assert [s[:2] for s in seen] == [(0, 3), (1, 2), (2, 2)]
    assert seen[1][2] == float(torch.rand((), generator=shard_generator(1, 1)))


def test_too_many_shards_is_a_problem_error():
    with pytest.raises(ProblemError, match="--shards: 5 shards for 4 samples"):
        shard_sizes(4, 5)


def test_sharded_mlp_runs_are_the_shards_runs_in_order():
    problem = bsde.load_problem("allen_cahn", {"equation.dim": 2})
    sharded = mlp(problem.equation, level=2, repeats=5, seed=3, shards=2)
    first = mlp(problem.equation, level=2, repeats=2, seed=0, shards=None)  # another stream: differs
    runs = sharded.details["runs"]
    assert len(runs) == 5 and sharded.details["shards"] == 2 and runs[:2] != first.details["runs"]
    assert sharded.value == pytest.approx(sum(runs) / 5, rel=1e-15)


def test_sharded_cole_hopf_and_mc_agree_with_unsharded_within_error():
    hjb = bsde.load_problem("hjb", {"equation.dim": 5})
    plain = bsde.reference(hjb, "cole-hopf", paths=40000)
    sharded = bsde.reference(hjb, "cole-hopf", paths=40000, shards=4)
    assert sharded.details["shards"] == 4 and sharded.paths == plain.paths
    assert abs(sharded.value - plain.value) < 4 * math.hypot(plain.stderr, sharded.stderr)
    assert sharded.stderr == pytest.approx(plain.stderr, rel=0.1)


def test_deterministic_methods_take_no_shards():
    with pytest.raises(ProblemError, match="deterministic"):
        bsde.reference(bsde.load_problem("hjb", {"equation.dim": 3}), "radial", shards=2)
    # auto in shards: the preferred sampling method, or a one-line refusal where none applies
    assert bsde.reference(bsde.load_problem("hjb", {"equation.dim": 3}), shards=2, paths=4000).method == "cole-hopf"
    with pytest.raises(ProblemError, match="no sampling method applies to 'burgers_type'.*'exact' .deterministic."):
        bsde.reference(bsde.load_problem("burgers_type", {"equation.dim": 3}), shards=2)
