"""torch.distributed helpers for multi-process VPG; every helper is a no-op in one process.

The algorithm calls these the same way whether it runs alone, under ``--workers N`` or under
``torchrun`` across machines:

1. ``dist = init(device, timeout)`` reads rank and rendezvous from torchrun's variables
   (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and joins the process group: gloo on CPU,
   nccl on CUDA.
2. ``broadcast_params(dist, model)`` once, so every rank starts from rank 0's weights.
3. ``global_moments`` / ``global_count`` / ``gather_objects`` make the baseline, the loss
   normaliser and the episode statistics global, so rank 0 logs what one process would.
4. ``sync_grads_and_step(dist, model, optimizer, sync, reduce)`` after ``backward()``.

``--workers N`` does not have a launcher of its own: ``launch_local`` hands the same command
line to torch's elastic launcher (what ``torchrun`` runs) with a c10d rendezvous on 127.0.0.1,
so ``--workers N`` and ``torchrun`` share one code path.

Faults: every collective runs under the process group's timeout, and a failed collective (a
dead peer closes its sockets; a hung one runs into the timeout) becomes a ``PeerLostError``
with a one-line message, which the CLI prints before exiting with status 1.
"""

from __future__ import annotations

import atexit
import gc
import os
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as tdist

from dirtyrl.errors import UserError

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 60.0


class PeerLostError(RuntimeError):
    """A collective failed: another rank died, hung past the timeout, or the network broke."""


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""  # "" in one process, else "gloo" or "nccl"
    timeout_s: float = DEFAULT_TIMEOUT_S
    owns_group: bool = True  # False: the caller initialised the group and destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def comm_device(self) -> torch.device:
        """Where the tensors of a collective must live: nccl only moves CUDA tensors."""
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Process group
# ---------------------------------------------------------------------------------------------


def launched() -> bool:
    """True inside a worker started by torchrun / ``--workers`` (torchrun sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device: torch.device | str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> Dist:
    """Join the process group described by torchrun's environment; one process when it is absent.

    ``timeout_s`` bounds every collective: a rank that waits longer than this for a peer (dead,
    hung, or cut off) raises ``PeerLostError`` instead of hanging forever. A group the caller has
    already initialised (a script of one's own under torchrun) is used as it is, and left to the
    caller to destroy.
    """
    if tdist.is_available() and tdist.is_initialized():
        return Dist(
            rank=tdist.get_rank(),
            world_size=tdist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
            backend=str(tdist.get_backend()),
            timeout_s=timeout_s,
            owns_group=False,
        )
    world_size = env_world_size()
    if world_size == 1:
        return Dist()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"--device cuda: nccl needs one GPU per local worker, and local rank {local_rank} finds "
                f"{torch.cuda.device_count()} GPU(s); use fewer workers per machine or --device cpu (gloo)"
            )
        # One GPU per local rank; "cuda" without an index then means this rank's GPU.
        torch.cuda.set_device(local_rank)
    dist = Dist(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        backend=backend,
        timeout_s=timeout_s,
    )
    _collective(
        dist,
        "joining the process group",
        tdist.init_process_group,
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )
    # A run that ends by Ctrl-C or an error skips shutdown(); tear the group down before the
    # interpreter does (see _destroy).
    atexit.register(_destroy)
    return dist


def shutdown(dist: Dist) -> None:
    """Leave the process group. The barrier keeps exits symmetric: no rank tears its end of the
    group down while rank 0 still writes its final checkpoint, and a failure there reaches
    every rank instead of only the one that had it."""
    if not dist.enabled or not tdist.is_initialized():
        return
    _collective(dist, "the final barrier", tdist.barrier)
    if dist.owns_group:
        _destroy()


def _destroy() -> None:
    """Destroy the group *now*, while the interpreter is alive.

    ``destroy_process_group`` drops the registry's references, but the gloo group can stay
    alive in a reference cycle until the interpreter's final collection; its worker thread then
    releases the last collective's tensors, needs the GIL during finalisation, and the process
    dies with "terminate called without an active exception" (SIGABRT) after a successful run
    (half of the 2-rank reduce-broadcast runs here). Collecting the cycle joins those threads first.
    """
    if tdist.is_initialized():
        tdist.destroy_process_group()
    gc.collect()


def _collective(dist: Dist, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one collective; turn the backend's failure into a one-line ``PeerLostError``."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:  # DistBackendError, DistStoreError and gloo's socket errors
        _destroy()  # the group is unusable; tear it down before the interpreter does
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        reason = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]).split(". This is typically", 1)[0]  # drop gloo's source path
        raise PeerLostError(
            f"rank {dist.rank} of {dist.world_size}: {what} failed: another worker died, stopped answering for "
            f"--dist-timeout {dist.timeout_s:g} s, or the network broke ({reason[:200]}); "
            "resume from RUN_DIR/checkpoints/latest.pt"
        ) from exc


# ---------------------------------------------------------------------------------------------
# Splitting the batch: uneven batches give the first ranks one more episode, none is dropped
# ---------------------------------------------------------------------------------------------


def episodes_for_rank(batch_episodes: int, world_size: int, rank: int) -> int:
    """Split a batch of episodes over ranks; the first ``batch % world`` ranks play one more.

    >>> [episodes_for_rank(10, 4, r) for r in range(4)]
    [3, 3, 2, 2]
    """
    return batch_episodes // world_size + (1 if rank < batch_episodes % world_size else 0)


def episode_offset(batch_episodes: int, world_size: int, rank: int) -> int:
    """Index of this rank's first episode within the batch.

    >>> [episode_offset(10, 4, r) for r in range(4)]
    [0, 3, 6, 8]
    """
    return sum(episodes_for_rank(batch_episodes, world_size, r) for r in range(rank))


# ---------------------------------------------------------------------------------------------
# Weights and gradients
# ---------------------------------------------------------------------------------------------


def broadcast_params(dist: Dist, model: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights (one flattened broadcast)."""
    if not dist.enabled:
        return
    _broadcast_weights(dist, model)


def _broadcast_weights(dist: Dist, model: torch.nn.Module) -> None:
    tensors = [*model.parameters(), *model.buffers()]
    flat = torch.cat([t.detach().reshape(-1) for t in tensors]).to(dist.comm_device)
    _collective(dist, "broadcasting the weights", tdist.broadcast, flat, src=0)
    if not dist.is_main:
        with torch.no_grad():
            for t, chunk in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
                t.copy_(chunk.view_as(t))


def flat_grads(model: torch.nn.Module, device: torch.device) -> torch.Tensor:
    """Every parameter's gradient in one 1-D buffer (a missing gradient counts as zeros).

    >>> m = torch.nn.Linear(2, 1)
    >>> m.weight.grad = torch.ones(1, 2)
    >>> flat_grads(m, torch.device("cpu")).tolist()  # bias has no gradient yet
    [1.0, 1.0, 0.0]
    """
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(device) for p in model.parameters()]
    )


def set_grads(model: torch.nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat buffer back into the ``.grad`` of every parameter (the inverse of flat_grads)."""
    params = list(model.parameters())
    for p, chunk in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = chunk.view_as(p).to(p.device).clone()


def sync_grads_and_step(
    dist: Dist, model: torch.nn.Module, optimizer: torch.optim.Optimizer, sync: str = "allreduce", reduce: str = "sum"
) -> None:
    """Combine gradients across ranks and step the optimizer so all ranks keep equal weights.

    ``allreduce``: one all-reduce over all gradients flattened into one buffer (one call, not
    one per parameter); every rank then takes the same optimizer step on the same gradient, so
    the weights stay bit-identical without being sent.

    ``reduce-broadcast`` (the seed's experiment): reduce the gradients to rank 0, step only
    there, broadcast the new weights. The seed's ``dist.barrier()`` before the broadcast is not
    needed: a broadcast cannot complete on a receiving rank before rank 0 posts its buffer, and
    rank 0 posts it only after its step. The optimizer state (RMSprop's running averages) then
    lives on rank 0 alone, which is also the only rank that writes checkpoints.

    ``reduce``: ``sum`` adds the per-rank gradients (with the loss divided by the global step
    count this is exactly the one-process gradient); ``mean`` divides the sum by the world size.
    """
    if not dist.enabled:
        optimizer.step()
        return
    flat = flat_grads(model, dist.comm_device)
    if sync == "allreduce":
        _collective(dist, "all-reduce of the gradients", tdist.all_reduce, flat, op=tdist.ReduceOp.SUM)
        if reduce == "mean":
            flat /= dist.world_size
        set_grads(model, flat)
        optimizer.step()
    elif sync == "reduce-broadcast":
        _collective(dist, "reduce of the gradients to rank 0", tdist.reduce, flat, dst=0, op=tdist.ReduceOp.SUM)
        if dist.is_main:
            if reduce == "mean":
                flat /= dist.world_size
            set_grads(model, flat)
            optimizer.step()
        _broadcast_weights(dist, model)
    else:
        raise ValueError(f"unknown sync mode {sync!r}")


# ---------------------------------------------------------------------------------------------
# Global statistics
# ---------------------------------------------------------------------------------------------


def _all_reduce_sum(dist: Dist, values: list[float], what: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    t = torch.tensor(values, dtype=dtype, device=dist.comm_device)
    _collective(dist, what, tdist.all_reduce, t, op=tdist.ReduceOp.SUM)
    return t.cpu()


def global_count(dist: Dist, count: int) -> int:
    """Sum of ``count`` over all ranks."""
    if not dist.enabled:
        return count
    return int(_all_reduce_sum(dist, [count], "summing the step counts", torch.int64)[0])


def global_moments(dist: Dist, values: np.ndarray) -> tuple[float, float, int]:
    """Mean, std and count of ``values`` over all ranks (the advantage baseline).

    Two passes, as ``np.std`` does: the global mean first, then the sum of squared deviations
    from it, so the result does not suffer the cancellation of E[x^2] - E[x]^2.
    """
    if not dist.enabled:
        return float(values.mean()), float(values.std()), len(values)
    total, count = _all_reduce_sum(dist, [float(np.sum(values, dtype=np.float64)), len(values)], "the baseline mean")
    mean = float(total / count)
    squares = _all_reduce_sum(dist, [float(np.sum((values - mean) ** 2, dtype=np.float64))], "the baseline std")
    return mean, float(np.sqrt(float(squares[0]) / float(count))), int(count)


def gather_objects(dist: Dist, obj: object) -> list[object]:
    """Every rank's ``obj`` in rank order (on all ranks); rank order is episode order."""
    if not dist.enabled:
        return [obj]
    out: list[object] = [None] * dist.world_size
    _collective(dist, "gathering the episode statistics", tdist.all_gather_object, out, obj)
    return out


# ---------------------------------------------------------------------------------------------
# Resume after a restart, and the local launcher behind --workers N
# ---------------------------------------------------------------------------------------------


def resume_path(resume: str | None, run_dir: str | None) -> str | None:
    """The checkpoint a run continues from.

    - ``--resume PATH``: that file.
    - ``--resume auto``: ``RUN_DIR/checkpoints/latest.pt`` if it exists, else a fresh start.
    - Under ``torchrun --max-restarts K`` (K > 0) every attempt behaves as ``--resume auto``, so
      a worker group restarted after a failure continues from the last checkpoint the failed
      group wrote. RUN_DIR is --run-dir, else the run dir stored in the --resume checkpoint.
      The rule is the same on every node (TORCHELASTIC_RESTART_COUNT is not: an agent whose own
      workers were healthy restarts them without counting a restart), so all ranks agree.
    """
    elastic = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0
    if resume != "auto" and not elastic:
        return resume
    if run_dir is None and resume not in (None, "auto"):
        from dirtyrl.checkpoint import load_checkpoint

        run_dir = load_checkpoint(resume)["config"]["run"]["run_dir"]
    if run_dir is None:
        if resume == "auto":
            raise UserError("--resume auto needs --run-dir: it continues from RUN_DIR/checkpoints/latest.pt if that exists")
        _say("warning: torchrun --max-restarts without --run-dir: a restarted worker group cannot find its checkpoint")
        return None
    latest = Path(run_dir) / "checkpoints" / "latest.pt"
    if latest.is_file():
        return str(latest)
    return None if resume == "auto" else resume


def _say(text: str) -> None:
    """One line from rank 0 (every rank runs the CLI)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"dirtyrl: {text}", flush=True)


def launch_local(workers: int, argv: list[str], run_dir: str | None = None) -> int:
    """Run ``python -m dirtyrl <argv>`` in ``workers`` processes on this machine; exit status.

    This is ``torchrun --nnodes 1 --nproc-per-node N -m dirtyrl <argv>``: torch's elastic agent
    starts the processes with RANK/WORLD_SIZE/MASTER_* in their environment (so each one sets
    its thread count before numpy and torch load), watches them, and stops the others when one
    fails. Rendezvous: c10d on 127.0.0.1, on a free port the store picks itself.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # The agent's INFO lines (launch configs, rendezvous) are noise for a local run.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.WARNING)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=workers,
        run_id=f"dirtyrl-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        local_addr="127.0.0.1",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "dirtyrl", *argv)
    except ChildFailedError as exc:
        # The root cause: a worker killed from outside, else one that exited with an error, not
        # the ones the agent then stopped with SIGTERM or whose collectives failed after it.
        def blame(item):
            rank, f = item
            return (f.exitcode < 0 and f.signal_name() == "SIGTERM", f.exitcode == 1, f.timestamp, rank)

        rank, first = min(exc.failures.items(), key=blame)
        if first.exitcode == 2:
            return 2  # a user error: the worker has printed it
        how = f"was killed by {first.signal_name()}" if first.exitcode < 0 else f"exited with status {first.exitcode}"
        print(
            f"dirtyrl: error: worker rank {rank} (pid {first.pid}) {how}; the other workers were stopped. "
            f"Continue the run with --resume {Path(run_dir or 'RUN_DIR') / 'checkpoints' / 'latest.pt'}",
            file=sys.stderr,
        )
        return 1
    except (KeyboardInterrupt, SignalException):
        return 130
    return 0
