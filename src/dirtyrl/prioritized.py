"""Prioritized experience replay (Schaul et al. 2016, proportional variant) on the frame buffer.

Transitions are drawn with probability P(i) = p_i / sum_j p_j, p_i = (|TD error| + floor)^alpha
(``dqn_maths.priority``); new ones get the largest priority seen so far, so each is replayed at
least once soon after it arrives. Running sums over the p_i make the draw cheap: drawing a batch and updating its
priorities cost a few numpy calls over the batch (``PrefixSums``), never a Python loop over
samples.

Only sampleable transitions have a weight in the sums. Every other slot has priority 0: reset frames
(they hold no transition), the newest n-1 slots of an n-step buffer (their windows are not
written yet) and the oldest ``history`` slots (their frame stacks are partly overwritten). So the
probabilities are exact and the sampler never rejects and redraws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dirtyrl.buffers import Batch, FrameReplayBuffer
from dirtyrl.dqn_maths import importance_weights, priority


class PrefixSums:
    """Non-negative weights on ``capacity`` slots, to draw slots in proportion to their weight.

    Two levels: the weights in blocks of ``block`` slots, and each block's sum. Drawing a batch
    takes a cumulative sum over the block sums, a search, and a cumulative sum inside each drawn
    block; setting weights recomputes the sums of the blocks they fall in. Each is a handful of
    numpy calls whatever the capacity, where a binary sum tree needs a call per level (17 for
    100k slots). Sums are recomputed from the weights, never adjusted by deltas, so rounding
    errors cannot accumulate over millions of updates.

    >>> sums = PrefixSums(4, block=2)
    >>> sums.set(np.array([0, 1, 2, 3]), np.array([1.0, 0.0, 2.0, 1.0]))
    >>> sums.total
    4.0
    >>> sums.find(np.array([0.0, 1.0, 2.9, 3.5, 4.0])).tolist()  # the empty slot 1 is never found
    [0, 2, 2, 3, 3]
    """

    def __init__(self, capacity: int, block: int = 256) -> None:
        self.capacity, self.block = int(capacity), int(block)
        self.blocks = -(-self.capacity // self.block)
        self.weights = np.zeros(self.blocks * self.block, np.float64)
        self.sums = np.zeros(self.blocks, np.float64)
        self.total = 0.0

    def leaves(self, slots: np.ndarray) -> np.ndarray:
        return self.weights[slots]

    def set(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Set the weights of ``slots`` (a slot given twice must get the same value twice)."""
        self.weights[slots] = values
        blocks = np.asarray(slots, np.int64) // self.block
        self.sums[blocks] = self.weights.reshape(self.blocks, self.block)[blocks].sum(axis=1)
        self.total = float(self.sums.sum())

    def find(self, values: np.ndarray) -> np.ndarray:
        """For each value in [0, total], the slot whose interval of the running sum holds it.

        Slot i owns [sum of weights before i, that plus its weight): an empty slot owns nothing,
        and values pushed past the ends by rounding are pulled back onto the nearest non-empty
        slot, so every slot returned has a positive weight while the total is positive.
        """
        ends = np.cumsum(self.sums)
        # The last block with a positive sum: values at or past the total belong to it.
        last = int(np.flatnonzero(self.sums)[-1])
        block = np.minimum(np.searchsorted(ends, values, side="right"), last)
        inner = np.cumsum(self.weights.reshape(self.blocks, self.block)[block], axis=1)  # (B, block)
        rest = np.clip(values - (ends[block] - self.sums[block]), 0.0, np.nextafter(inner[:, -1], 0.0))
        return block * self.block + (inner <= rest[:, None]).sum(axis=1)


class PrioritizedReplayBuffer(FrameReplayBuffer):
    """``FrameReplayBuffer`` that samples by priority and returns importance weights with each batch.

    ``n_step`` must be the n the learner samples with: the newest n-1 slots stay unsampleable.

    >>> buf = PrioritizedReplayBuffer(8, (1,), history=1, alpha=1.0)
    >>> buf.start_episode(np.zeros(1, np.float32))
    >>> for t in range(3):
    ...     buf.add(0, 0.0, np.full(1, t, np.float32), terminated=False, truncated=False)
    >>> buf.update_priorities(np.array([1, 2, 3]), np.array([0.999, 0.999, 2.999]))
    >>> np.bincount(buf.sample(4000, np.random.default_rng(0)).indices, minlength=4).tolist()  # 1 : 1 : 3
    [0, 800, 800, 2400]
    """

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, ...],
        history: int,
        frame_dtype: np.dtype | type = np.uint8,
        n_actions: int = 256,
        *,
        alpha: float = 0.6,
        n_step: int = 1,
    ) -> None:
        super().__init__(capacity, frame_shape, history, frame_dtype, n_actions)
        self.alpha, self.n_step = float(alpha), int(n_step)
        self.beta = 1.0  # set by the learner's schedule before each draw
        self.priorities = np.zeros(self.capacity, np.float64)  # p^alpha as last set, valid or not
        self.max_priority = 1.0  # largest p^alpha so far: what a new transition gets
        self.prefix = PrefixSums(self.capacity)
        self._stale: list[int] = []  # global indices written since the sums last caught up

    def _write(self, frame: np.ndarray, action: int, reward: float, terminated: bool, truncated: bool, pos: int) -> None:
        self.priorities[self.added % self.capacity] = self.max_priority
        self._stale.append(self.added)
        super()._write(frame, action, reward, terminated, truncated, pos)

    def _refresh(self, slots: np.ndarray) -> None:
        """Recompute the weights in the running sums for ``slots`` from their priorities and whether they can be sampled."""
        if len(slots) == 0:
            return
        slots = np.asarray(slots, np.int64) % self.capacity
        newest = self.added - 1
        index = newest - (newest - slots) % self.capacity  # the global index each slot holds now
        lo, hi = self._sample_range()
        sampleable = (index >= lo) & (index < hi - (self.n_step - 1)) & (self.ep_pos[slots] != 0)
        self.prefix.set(slots, np.where(sampleable, self.priorities[slots], 0.0))

    def _catch_up(self, also: np.ndarray | None = None) -> None:
        """Bring the running sums up to date with the writes since the last draw (each write makes its own
        slot unsampleable, the slot n-1 back sampleable, and one at the old end unsampleable) and
        with the slots ``also``, in one pass."""
        written = np.array(self._stale, np.int64)
        self._stale.clear()
        parts = [written, written - (self.n_step - 1), written - self.capacity + self.history]
        changed = np.concatenate(parts if also is None else [*parts, also])
        self._refresh(changed[changed >= 0])

    def sample_indices(self, batch_size: int, rng: np.random.Generator, n_step: int = 1) -> np.ndarray:
        """Stratified by priority: one draw in each of ``batch_size`` equal slices of the total."""
        if n_step != self.n_step:
            raise ValueError(f"this buffer was built for n_step={self.n_step}, sampled with {n_step}")
        if self._stale:
            self._catch_up()
        total = self.prefix.total
        if total <= 0:
            raise ValueError("the buffer holds no complete transition yet")
        values = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        return self.prefix.find(values)

    def sample(self, batch_size: int, rng: np.random.Generator, n_step: int = 1, gamma: float = 0.99) -> Batch:
        batch = super().sample(batch_size, rng, n_step, gamma)
        probs = self.prefix.leaves(batch.indices) / self.prefix.total
        return batch._replace(weights=importance_weights(probs, self.beta))

    def update_priorities(self, slots: np.ndarray, td_errors: np.ndarray) -> None:
        """Set the priorities of the transitions in ``slots`` from the TD errors just measured on them."""
        new = priority(td_errors, self.alpha)
        self.priorities[slots] = new
        self.max_priority = max(self.max_priority, float(new.max()))
        self._catch_up(also=np.asarray(slots, np.int64))

    # ---- persistence: the priorities travel with the replay's frames (--checkpoint-replay)

    def save(self, path: Path) -> int:
        written = super().save(path)
        np.save(Path(path) / "priorities.npy", np.append(self.priorities, self.max_priority))
        return written + self.priorities.nbytes

    def load(self, path: Path, added: int, pos: int) -> None:
        super().load(path, added, pos)
        file = Path(path) / "priorities.npy"
        if not file.is_file():
            raise ValueError(f"{file} is missing: the replay was saved without --prioritized")
        saved = np.load(file)
        if saved.shape != (self.capacity + 1,):
            raise ValueError(f"saved priorities have shape {saved.shape}, this run needs ({self.capacity + 1},)")
        self.priorities[:], self.max_priority = saved[:-1], float(saved[-1])
        self._stale.clear()
        self._refresh(np.arange(min(self.added, self.capacity)))
