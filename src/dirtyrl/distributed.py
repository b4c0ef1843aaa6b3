"""torch.distributed helpers for multi-process VPG; every helper is a no-op in one process.

The algorithm calls these the same way whether it runs alone, under ``--workers N`` or under
``torchrun`` across machines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init() -> Dist:
    """Read rank and world size from torchrun's environment; one process when they are absent."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Dist()
    raise NotImplementedError("multi-process runs are not wired yet")


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


def global_count(dist: Dist, count: int) -> int:
    """Sum of ``count`` over all ranks."""
    return count


def broadcast_params(dist: Dist, model: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights."""
    if not dist.enabled:
        return


def global_moments(dist: Dist, values: np.ndarray) -> tuple[float, float, int]:
    """Mean, std and count of ``values`` over all ranks (the advantage baseline)."""
    return float(values.mean()), float(values.std()), len(values)


def sync_grads_and_step(
    dist: Dist, model: torch.nn.Module, optimizer: torch.optim.Optimizer, sync: str = "allreduce", reduce: str = "sum"
) -> None:
    """Combine gradients across ranks and step the optimizer so all ranks keep equal weights."""
    optimizer.step()


def gather_objects(dist: Dist, obj: object) -> list[object]:
    """Every rank's ``obj`` in rank order (on all ranks)."""
    return [obj]


def shutdown(dist: Dist) -> None:
    return
