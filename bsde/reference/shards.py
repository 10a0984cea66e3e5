"""Monte Carlo in fixed shards: each shard its own random stream, the shards' moments merged exactly.

With ``shards`` = S the samples (antithetic pairs, or MLP repeats) are split into S nearly equal
shards; shard s draws from a generator seeded by ``stream_seed(seed, s)`` (:mod:`bsde.distributed`),
so the estimate depends on S and the seed, never on how many processes compute the shards. Over
processes (``group``) each computes its block of shards; the shards' moments are gathered and merged
in shard order: n = sum n_s, mean = sum n_s m_s / n,
(n - 1) C = sum (n_s - 1) C_s + sum n_s (m_s - mean)(m_s - mean)^T; the extremes are the shards' extremes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

import torch

from bsde.distributed import stream_seed
from bsde.errors import ProblemError
from bsde.reference.sampling import DEVICE, Moments, Progress, antithetic_moments

if TYPE_CHECKING:
    from bsde.distributed import Group

T = TypeVar("T")


def shard_sizes(total: int, shards: int) -> list[int]:
    """``total`` split into ``shards`` parts that differ by at most one (the larger first)."""
    if shards < 1 or shards > total:
        raise ProblemError(f"--shards: {shards} shards for {total} samples; use between 1 and {total}")
    base, extra = divmod(total, shards)
    return [base + (s < extra) for s in range(shards)]


def shard_generator(seed: int, shard: int) -> torch.Generator:
    """The random stream of shard ``shard`` in a run seeded ``seed``."""
    return torch.Generator(device=DEVICE).manual_seed(stream_seed(seed, shard))


def merge(parts: list[Moments]) -> Moments:
    """The moments of the union of the parts' samples, exactly as if computed over all of them at once."""
    n = sum(part.n for part in parts)
    mean = sum(part.n * part.mean for part in parts) / n
    scatter = sum((part.n - 1) * part.cov + part.n * torch.outer(part.mean - mean, part.mean - mean)
                  for part in parts)
    return Moments(n, mean, scatter / max(n - 1, 1), torch.stack([part.high for part in parts]).amax(0),
                   torch.stack([part.low for part in parts]).amin(0))


def each_shard(run: Callable[[int, int, torch.Generator], T], sizes: list[int], seed: int,
               group: Group | None = None) -> list[T]:
    """[run(shard, size, generator) for every shard], each shard computed by one process of ``group``
    (contiguous blocks), the results gathered in shard order on every process."""
    local = group.shards(len(sizes)) if group is not None else range(len(sizes))
    done = [run(s, sizes[s], shard_generator(seed, s)) for s in local]
    if group is None:
        return done
    return [result for block in group.all_gather(done) for result in block]


def sharded_moments(columns: Callable[[torch.Tensor], torch.Tensor], paths: int, dim: int, *, seed: int,
                    shards: int, group: Group | None = None, progress: Progress | None = None) -> Moments:
    """:func:`antithetic_moments` over ``paths // 2`` pairs in ``shards`` shards (see the module docstring)."""
    sizes = shard_sizes(max(1, paths // 2), shards)
    mine = sum(sizes[s] for s in (group.shards(shards) if group is not None else range(shards)))
    everyone = sum(sizes)
    finished = [0]

    def run(shard: int, pairs: int, generator: torch.Generator) -> Moments:
        def step(done: int, total: int) -> None:
            if progress is not None:  # of all the paths, as far as this process's share has come
                progress(round((finished[0] + done) * everyone / max(mine, 1)), 2 * everyone)

        moments = antithetic_moments(columns, 2 * pairs, dim, generator=generator, progress=step)
        finished[0] += 2 * pairs
        return moments

    return merge(each_shard(run, sizes, seed, group))
