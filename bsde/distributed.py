"""Data-parallel runs over processes with torch.distributed: who runs, which shards, sums over processes.

``torchrun --nproc-per-node K -m bsde.cli solve ...`` (or ``bsde solve --nproc K``, which starts the
same through :func:`launch`) runs K copies of the command with RANK, WORLD_SIZE, LOCAL_RANK and
LOCAL_WORLD_SIZE in their environment. In a solve each process holds the whole model and trains on
its block of the batch's fixed shards (:class:`ShardStreams`): the gradients are averaged over the
processes (DistributedDataParallel), batch norm takes the global batch's statistics (``Group.total``
sums them), and each shard draws from its own random stream whoever draws it, so K processes with
B / K paths each reproduce one process with B paths. Process 0 (the lead) alone prints and writes.
Backends: gloo on CPU; on CUDA, NCCL for tensors on the GPU and gloo for the CPU-side flags.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import signal
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from bsde.errors import ProblemError
from bsde.launcher import LAUNCHER_PID
from bsde.networks import StackedBatchNorm
from bsde.runtime import available_cores

#: Python 3.11+: no current folder (nor script folder) on the import path of the processes it starts
SAFE_PATH = "PYTHONSAFEPATH"

T = TypeVar("T")
_MISSING = object()


def _comparable(value: Any) -> Any:
    """``value`` as it compares alike in every process: plain values as they are, a function by its qualified name,
    another object by its type (their reprs hold addresses that differ between processes)."""
    if isinstance(value, (str, int, float, bool, type(None), list, tuple)):
        return value
    kind = value if callable(value) and hasattr(value, "__qualname__") else type(value)
    return f"{getattr(kind, '__module__', '?')}.{kind.__qualname__}"


CPU = torch.device("cpu")
MASK64 = (1 << 64) - 1
#: set by each_alone(): every process runs its own whole solves (bsde compare spreads seeds this way)
_ALONE = [False]


def world() -> int:
    """How many processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world() -> int:
    """How many of them run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def rank() -> int:
    """This process's place among them, 0 for the lead (and without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def launched() -> bool:
    """Whether this process is one of several that torchrun started."""
    return world() > 1


@contextmanager
def each_alone() -> Iterator[None]:
    """Within the block, :func:`group` is None: each process runs whole solves of its own."""
    before, _ALONE[0] = _ALONE[0], True
    try:
        yield
    finally:
        _ALONE[0] = before


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK64
    return value ^ (value >> 31)


def stream_seed(seed: int, shard: int) -> int:
    """The seed of shard ``shard``'s stream in a run seeded ``seed``: a 64-bit mix of both (unrelated streams
    for different shards and for different seeds)."""
    return _splitmix64(_splitmix64(seed & MASK64) ^ shard)


class ShardStreams:
    """One random stream per fixed shard of the global batch; this process draws the shards in ``local``.

    Shard s holds rows [s B / S, (s + 1) B / S) of every batch and draws them from its own generator,
    seeded by :func:`stream_seed`, so a batch is the same whichever processes draw its shards.
    """

    def __init__(self, seed: int, shards: int, batch: int, local: range, device: torch.device):
        if batch % shards:
            raise ProblemError(f"solver.shards: {shards} does not divide solver.batch_size {batch}")
        self.seed, self.shards, self.local = seed, shards, local
        #: the rows this process draws: its share of the global batch
        self.rows = batch // shards * len(local)
        self.generators = [torch.Generator(device=device).manual_seed(stream_seed(seed, s)) for s in local]

    def branch(self, count: int) -> None:
        """Reseed every shard's stream for the ``count``-th branch (a rollback: the same on every process).

        Restored to a snapshot, the streams would redraw the batches that followed it, the one that failed among
        them (QA: 5 rollbacks, each halving the learning rate, failed at the same iteration 554)."""
        for s, g in zip(self.local, self.generators):
            g.manual_seed(stream_seed(stream_seed(self.seed, s), count))

    def state(self) -> dict[int, torch.Tensor]:
        """Generator states by shard (of the local shards)."""
        return {s: g.get_state() for s, g in zip(self.local, self.generators)}

    def restore(self, states: dict[int, torch.Tensor]) -> None:
        """Continue the local shards' streams from ``states`` (which may hold every shard's)."""
        for s, g in zip(self.local, self.generators):
            g.set_state(states[s])


class _Total(torch.autograd.Function):
    """The sum of a tensor over the processes; its gradient is the sum of the gradients (the output
    on every process depends on the input on every process)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


@dataclass(frozen=True)
class Group:
    """The processes of one data-parallel run, seen from one of them."""

    rank: int
    size: int
    device: torch.device

    @property
    def lead(self) -> bool:
        """Whether this is process 0, the one that prints and writes."""
        return self.rank == 0

    def shards(self, count: int, *, option: str = "--shards") -> range:
        """This process's contiguous block of ``count`` shards (blocks differ by at most one shard); ``option`` names
        the setting that gave ``count`` in the error when there are fewer shards than processes."""
        if count < self.size:
            raise ProblemError(f"{option}: {count} shard{'s' if count != 1 else ''} cannot feed {self.size} processes; "
                               f"set {option} to at least {self.size}"
                               f"{' (a divisor of solver.batch_size)' if option == 'solver.shards' else ''}")
        return range(self.rank * count // self.size, (self.rank + 1) * count // self.size)

    @staticmethod
    def total(tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the processes (differentiable)."""
        return _Total.apply(tensor)

    def data_parallel(self, model: nn.Module, unused_parameters: bool = False) -> nn.Module:
        """``model`` with global batch norm, wrapped so that backward averages the gradients over the processes.

        The buffers (running statistics) are not broadcast: they follow the same global statistics everywhere.
        """
        _set_total(model, self.total)
        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel
        # torch 2.13 renamed the flag (and warns on the old name); syncing the buffers once at the start is harmless
        buffers = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                   else {"broadcast_buffers": False})
        # a weight with a dimension of size 1 (the last layer at d = 1, laid out (S, out, in): bsde.networks) gets a
        # gradient whose stride there differs from the bucket's, which no element's place depends on; torch warned
        # of it on every process at every run (QA), of a copy of S x in numbers
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides", category=UserWarning)
        return ddp(model, device_ids=ids, find_unused_parameters=unused_parameters, **buffers)

    @staticmethod
    def alone(model: nn.Module) -> nn.Module:
        """``model`` with batch norm on the local batch again (for work one process does on its own)."""
        _set_total(model, None)
        return model

    def agree(self, share: torch.Tensor, stop: bool, *, loss: bool) -> tuple[torch.Tensor, bool]:
        """(the global loss, whether any process was asked to stop): one sum over the processes, on the CPU.

        ``share`` is this process's share of the global loss; without ``loss`` only the stop flag is
        summed and ``share`` comes back as it was (no device sync on a GPU).
        """
        flags = torch.tensor([float(share.detach()) if loss else 0.0, float(stop)], dtype=torch.float64)
        dist.all_reduce(flags)
        return (share.new_tensor(flags[0].item()) if loss else share), bool(flags[1].item() > 0)

    def from_lead(self, task: Callable[[], T]) -> T:
        """``task()`` run on the lead alone; its result (or its exception, raised) on every process."""
        box: list[Any] = [None]
        if self.lead:
            try:
                box[0] = (True, task())
            except Exception as exc:  # noqa: BLE001 - every process must hear about it, then it is raised again
                box[0] = (False, exc)
        dist.broadcast_object_list(box, src=0)
        done, value = box[0]
        if not done:
            raise value
        return value

    def all_gather(self, value: T) -> list[T]:
        """Every process's ``value``, in rank order, on every process."""
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        dist.barrier()

    def same_everywhere(self, what: str, settings: dict[str, Any]) -> None:
        """Raise ProblemError on every process unless each holds the same ``settings`` (nested mappings of plain
        values): processes started with other files, overrides or seeds would train apart, or silently on
        other numbers where the tensors' sizes still agree."""
        from bsde.checkpoint import flatten

        flat = {key: _comparable(value) for key, value in flatten(settings).items()}
        for rank, other in enumerate(self.all_gather(flat)):
            if other != flat:
                key = min(k for k in flat.keys() | other.keys() if flat.get(k, _MISSING) != other.get(k, _MISSING))
                raise ProblemError(f"{what}: process {rank} runs other settings than process {self.rank} ({key}: "
                                   f"{other.get(key, 'not set')!r} there, {flat.get(key, 'not set')!r} here); start "
                                   "every process with the same command, files and seed")

    def lead_saves(self, write: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        """A trainer's save hook for every process: the snapshots' shard streams gathered in, the lead
        ``write``-s, and no process goes on (or exits) before the file is written."""

        def save(state: dict[str, Any]) -> None:
            streams: dict[int, torch.Tensor] = {}
            for part in self.all_gather(state["streams"]):
                streams.update(part)
            if self.lead:
                write({**state, "streams": streams})
            self.barrier()

        return save


def _set_total(model: nn.Module, total: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
    for module in model.modules():
        if isinstance(module, StackedBatchNorm):
            module.total = total


def process_device(device: torch.device) -> torch.device:
    """The device this process computes on: on CUDA under torchrun GPU LOCAL_RANK (what :func:`group` takes),
    else ``device``. Ask before the first CUDA call (a memory check makes a context on the device it asks about)."""
    if device.type == "cuda" and launched() and not _ALONE[0]:
        check_gpus(device, local_world())
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def check_gpus(device: torch.device, processes: int) -> None:
    """Refuse more processes on this machine than it has GPUs when they compute on CUDA: each takes GPU
    LOCAL_RANK of its own (NCCL runs one process per GPU). ``torch.cuda.device_count`` makes no CUDA context."""
    if device.type == "cuda" and processes > (gpus := torch.cuda.device_count()):
        raise ProblemError(f"--nproc {processes}: on CUDA each process takes a GPU of its own, and torch sees "
                           f"{gpus} on this machine; start at most {gpus} per machine, or use --device cpu")


def group(device: torch.device) -> Group | None:
    """The data-parallel group of this process (torch.distributed set up on first use), or None where the
    process runs alone (no torchrun, a single process, or inside :func:`each_alone`).

    On CUDA each process takes GPU LOCAL_RANK; ``Group.device`` names it.
    """
    if not launched() or _ALONE[0]:
        return None
    device = process_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
        atexit.register(_close)
    return Group(dist.get_rank(), dist.get_world_size(), device)


def close() -> None:
    """End this process's part in the group after a success that every process shares: wait for all,
    then take the group down (before the interpreter winds down, which gloo's threads do not survive)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def threads_per_process(processes: int) -> int:
    """The CPU threads each of ``processes`` processes on this machine gets: the cores shared out."""
    return max(1, available_cores() // max(1, processes))


def launch(arguments: list[str], processes: int, *, quiet_launcher: bool = True) -> int:
    """``python -m bsde.cli ARGUMENTS`` in ``processes`` processes on this machine, through torch.distributed.run
    (a standalone c10d rendezvous on a free local port); returns the exit code of the first process to fail,
    128 + the signal number when the launcher was stopped by a signal (after the workers stopped), 0 when
    all succeeded. The workers print; the launcher's own log lines are dropped unless ``quiet_launcher`` is False.
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    omp, launcher, safe = os.environ.get("OMP_NUM_THREADS"), os.environ.get(LAUNCHER_PID), os.environ.get(SAFE_PATH)
    # the workers run `python -m bsde.cli`, which puts the current folder first on the import path: a checkout's
    # bsde/ there would shadow the installed package (another version, or no bsde.cli at all); Python 3.11+
    os.environ[SAFE_PATH] = "1"
    if omp is None:  # what torchrun would set (with a warning); the workers set their threads themselves
        os.environ["OMP_NUM_THREADS"] = str(threads_per_process(processes))
    os.environ[LAUNCHER_PID] = str(os.getpid())  # the workers die with this process (bsde.launcher)
    # torch's elastic modules give each logger its own level: quiet them one by one
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith("torch.distributed")] if quiet_launcher else []
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    logs = tempfile.TemporaryDirectory(prefix="bsde-torchrun-")  # torch's own default leaves /tmp/torchelastic_*
    try:
        torchrun.run(torchrun.parse_args(["--standalone", "--nproc-per-node", str(processes), "--log-dir", logs.name,
                                          "--module", "bsde.cli", *arguments]))
    except ChildFailedError as exc:
        code = exc.get_first_failure()[1].exitcode
        return 128 - code if code < 0 else code or 1
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except KeyboardInterrupt:  # Ctrl-C before torchrun's own handlers were in place: the workers' start-up
        if not any(Path(logs.name).glob("*/attempt_*")):  # none started yet: the launcher's own line says it
            raise
        return 128 + int(signal.SIGINT)  # each started worker says it (QA: the launcher said it again, unlabelled)
    finally:
        logs.cleanup()
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        if safe is None:
            os.environ.pop(SAFE_PATH, None)
        if launcher is None:
            os.environ.pop(LAUNCHER_PID, None)
        else:
            os.environ[LAUNCHER_PID] = launcher
    return 0
