"""Replay memory for DQN that stores every frame once.

A naive replay buffer stores (obs, next_obs) per transition: with 4-frame stacks of 84x84
that is 8 frames, 56 KiB, per transition, and a million transitions no longer fit in RAM.
``FrameReplayBuffer`` keeps one circular array of single frames, one slot per env step, and
rebuilds both stacks of a sampled transition at sample time with one numpy gather.

Layout. Slot ``j`` holds the newest frame seen *after* the step stored in it, with that
step's action, reward and flags. An episode's reset frame takes a slot of its own, marked by
``ep_pos == 0``, and holds no transition. So a transition in slot ``j`` has::

    obs      = frames j-k   .. j-1     (k = history)
    next_obs = frames j-k+1 .. j

Frames from before the episode's first slot are zero-filled, never borrowed from the previous
episode (the trap: a stack that straddles a reset shows the agent a ball teleporting).
``ep_pos`` (position in the episode, saturating at 255) is all that needs to know: frame
``j - m`` belongs to the episode iff ``m <= ep_pos[j]``.

Cost: one frame plus 8 bytes of action, reward and flags per slot, plus one slot per episode
(~0.1% for Pong). 84x84 grey: 7,064 bytes per transition; 10^6 transitions: 6.58 GiB.
``np.zeros`` reserves the arrays lazily, so resident memory grows as the buffer fills.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from dirtyrl.dqn_maths import nstep_window

MAX_POS = 255  # ep_pos saturates here; any history up to this length is reconstructed exactly


class Batch(NamedTuple):
    """A sampled minibatch, numpy arrays sharing the leading batch dimension B."""

    obs: np.ndarray  # (B, k*C, H, W) frame dtype, oldest frame first
    actions: np.ndarray  # (B,) int64
    rewards: np.ndarray  # (B,) float32
    next_obs: np.ndarray  # (B, k*C, H, W)
    terminated: np.ndarray  # (B,) bool: a real end, do not bootstrap
    truncated: np.ndarray  # (B,) bool: a time limit, still bootstrap
    indices: np.ndarray  # (B,) int64 slot indices, for tests and debugging
    discounts: np.ndarray | None = None  # (B,) float32 gamma^m of n-step returns; None: one step, gamma
    weights: np.ndarray | None = None  # (B,) float32 importance weights of prioritized replay; None: uniform


class FrameReplayBuffer:
    """Circular replay memory of single frames; ``capacity`` slots, one per env step.

    ``frame_shape`` is one frame as the env stacks it along axis 0: ``(1, 84, 84)`` grey,
    ``(3, 80, 80)`` RGB, ``(4,)`` for a CartPole vector with history 1.

    >>> buf = FrameReplayBuffer(8, (1, 2, 2), history=2)
    >>> buf.start_episode(np.full((1, 2, 2), 1, np.uint8))
    >>> buf.add(0, 1.0, np.full((1, 2, 2), 2, np.uint8), terminated=False, truncated=False)
    >>> batch = buf.gather(np.array([1]))
    >>> batch.obs[0, :, 0, 0].tolist(), batch.next_obs[0, :, 0, 0].tolist()  # zero-filled before the reset frame
    ([0, 1], [1, 2])
    """

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, ...],
        history: int,
        frame_dtype: np.dtype | type = np.uint8,
        n_actions: int = 256,
    ) -> None:
        if capacity <= history:
            raise ValueError(f"capacity {capacity} must exceed the history length {history}")
        if not 1 <= history <= MAX_POS:
            raise ValueError(f"history must be in [1, {MAX_POS}], got {history}")
        self.capacity = int(capacity)
        self.history = int(history)
        self.frame_shape = tuple(frame_shape)
        self.frames = np.zeros((self.capacity, *self.frame_shape), frame_dtype)
        self.actions = np.zeros(self.capacity, np.uint8 if n_actions <= 256 else np.int32)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.terminated = np.zeros(self.capacity, bool)
        self.truncated = np.zeros(self.capacity, bool)
        self.ep_pos = np.zeros(self.capacity, np.uint8)
        self.added = 0  # slots ever written; the next slot is added % capacity
        self._pos = -1  # ep_pos of the last slot written; -1 before the first episode

    # ---- writing ---------------------------------------------------------------------------

    def start_episode(self, frame: np.ndarray) -> None:
        """Store an episode's reset frame (the newest frame of its first observation)."""
        self._write(frame, 0, 0.0, False, False, pos=0)

    def add(self, action: int, reward: float, next_frame: np.ndarray, terminated: bool, truncated: bool) -> None:
        """Store one step: the action taken, its reward and the newest frame of next_obs."""
        if self._pos < 0:
            raise RuntimeError("call start_episode(first_frame) before add()")
        self._write(next_frame, action, reward, terminated, truncated, pos=min(self._pos + 1, MAX_POS))

    def _write(self, frame: np.ndarray, action: int, reward: float, terminated: bool, truncated: bool, pos: int) -> None:
        j = self.added % self.capacity
        self.frames[j] = frame
        self.actions[j] = action
        self.rewards[j] = reward
        self.terminated[j] = terminated
        self.truncated[j] = truncated
        self.ep_pos[j] = pos
        self._pos = pos
        # Counted last: a concurrent sampler that reads ``added`` never sees a half-written slot.
        self.added += 1

    # ---- reading ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Slots in use (transitions plus one reset frame per episode)."""
        return min(self.added, self.capacity)

    @property
    def fill(self) -> float:
        return self.size / self.capacity

    @property
    def bytes_per_slot(self) -> int:
        """Bytes one stored step costs: one frame plus its action, reward and flags."""
        arrays = (self.frames, self.actions, self.rewards, self.terminated, self.truncated, self.ep_pos)
        return sum(a.itemsize * int(np.prod(a.shape[1:])) for a in arrays)

    @property
    def nbytes(self) -> int:
        return self.bytes_per_slot * self.capacity

    def _sample_range(self) -> tuple[int, int]:
        """Global slot indices [lo, hi) whose frames j-k..j are all still in memory."""
        return max(0, self.added - self.capacity + self.history), self.added

    def sample_indices(self, batch_size: int, rng: np.random.Generator, n_step: int = 1) -> np.ndarray:
        """Uniform over stored transitions: draw slots, redraw the reset-frame slots.

        With ``n_step`` > 1 the newest n-1 slots are left out: their windows are not written yet.

        Rejection is vectorised per round; reset slots are ~0.1% of Pong's slots (up to a few
        percent on CartPole), so a second round is rare and a third rarer still.
        """
        lo, hi = self._sample_range()
        hi -= n_step - 1
        if hi <= lo:
            raise ValueError("the buffer holds no complete transition yet")
        idx = rng.integers(lo, hi, size=batch_size) % self.capacity
        for _ in range(1000):
            bad = self.ep_pos[idx] == 0
            if not bad.any():
                return idx.astype(np.int64)
            idx[bad] = rng.integers(lo, hi, size=int(bad.sum())) % self.capacity
        raise ValueError("the buffer holds no transition (only reset frames)")

    def gather(self, idx: np.ndarray) -> Batch:
        """Rebuild the transitions in slots ``idx`` with one fancy-indexed gather of k+1 frames.

        obs and next_obs share k-1 frames, so the k+1 frames j-k..j are read once and both
        stacks are views into them. Both lie in the same episode, so one mask serves both.
        """
        k = self.history
        back = np.arange(k, -1, -1)  # (k+1,) = k, ..., 1, 0 frames back from slot j
        slots = (idx[:, None] - back[None, :]) % self.capacity  # (B, k+1)
        frames = self.frames[slots]  # (B, k+1, C, H, W): the only copy of pixel data
        outside = back[None, :] > self.ep_pos[idx][:, None]  # (B, k+1): before the episode's reset frame
        if outside.any():
            frames[outside] = 0
        b = len(idx)
        stack_shape = (b, k * self.frame_shape[0], *self.frame_shape[1:])
        return Batch(
            obs=frames[:, :k].reshape(stack_shape),
            actions=self.actions[idx].astype(np.int64),
            rewards=self.rewards[idx],
            next_obs=frames[:, 1:].reshape(stack_shape),
            terminated=self.terminated[idx],
            truncated=self.truncated[idx],
            indices=idx,
        )

    def sample(self, batch_size: int, rng: np.random.Generator, n_step: int = 1, gamma: float = 0.99) -> Batch:
        if n_step == 1:
            return self.gather(self.sample_indices(batch_size, rng))
        return self.gather_nstep(self.sample_indices(batch_size, rng, n_step), n_step, gamma)

    def gather_nstep(self, idx: np.ndarray, n: int, gamma: float) -> Batch:
        """n-step transitions starting in slots ``idx``: obs of slot j, reward sum_{i<m} gamma^i r_{j+i},
        next_obs and flags of slot j+m-1, discount gamma^m.

        The window stops early at the episode's end: a terminated or truncated step, or a slot
        after which the next one is a reset frame (an episode cut short by an interrupted run).
        It never crosses into the next episode. The caller draws ``idx`` with
        ``sample_indices(..., n_step=n)``, so every slot of a window has been written.

        >>> buf = FrameReplayBuffer(16, (1, 1, 1), history=1)
        >>> buf.start_episode(np.zeros((1, 1, 1), np.uint8))
        >>> for t in (1, 2, 3):
        ...     buf.add(0, 1.0, np.full((1, 1, 1), t, np.uint8), terminated=t == 3, truncated=False)
        >>> b = buf.gather_nstep(np.array([1, 2]), 3, 0.5)
        >>> b.rewards.tolist(), b.next_obs[:, 0, 0, 0].tolist(), b.terminated.tolist(), b.discounts.tolist()
        ([1.75, 1.5], [3, 3], [True, True], [0.125, 0.25])
        """
        offsets = np.arange(n)
        slots = (idx[:, None] + offsets[None, :]) % self.capacity  # (B, n) the window's steps
        stops = self.terminated[slots] | self.truncated[slots]
        # A reset frame right after step i ends the episode there even without a flag.
        stops[:, :-1] |= self.ep_pos[slots[:, 1:]] == 0
        rewards, m = nstep_window(self.rewards[slots], stops, gamma)
        last = (idx + m - 1) % self.capacity
        first, final = self.gather(idx), self.gather(last)
        return Batch(
            obs=first.obs,
            actions=first.actions,
            rewards=rewards,
            next_obs=final.next_obs,
            terminated=final.terminated,
            truncated=final.truncated,
            indices=idx,
            discounts=(gamma ** m.astype(np.float64)).astype(np.float32),
        )

    # ---- persistence (--checkpoint-replay) ---------------------------------------------------

    @property
    def episode_position(self) -> int:
        """ep_pos of the last slot written (-1 before the first episode): part of the state to save."""
        return self._pos

    _ARRAYS = ("frames", "actions", "rewards", "terminated", "truncated", "ep_pos")

    def save(self, path: Path) -> int:
        """Mirror the buffer into ``path`` (one .npy file per array); returns the bytes written.

        Incremental: the files are full-capacity memory maps (sparse on disk until filled), and
        each call writes only the slots added since the previous call to the same directory, so
        checkpointing a 7 GB buffer every episode costs an episode's worth of frames. The
        counters go in the checkpoint, written after this returns; a crash between the two can
        leave up to one checkpoint interval of newer frames in the oldest slots (resume is then
        approximate, never unreadable).
        """
        path = Path(path)
        fresh = getattr(self, "_mirror", None) != path or not (path / "frames.npy").is_file()
        first = max(0, self.added - self.capacity) if fresh else max(self._mirrored, self.added - self.capacity)
        slots = np.arange(first, self.added) % self.capacity
        path.mkdir(parents=True, exist_ok=True)
        total = 0
        for name in self._ARRAYS:
            array = getattr(self, name)
            file = path / f"{name}.npy"
            if fresh:
                disk = np.lib.format.open_memmap(file, mode="w+", dtype=array.dtype, shape=array.shape)
            else:
                disk = np.load(file, mmap_mode="r+")
            disk[slots] = array[slots]
            disk.flush()
            total += array[:1].nbytes * len(slots)
            del disk
        self._mirror, self._mirrored = path, self.added
        return total

    def load(self, path: Path, added: int, pos: int) -> None:
        """Restore a mirror written by ``save``, with the counters the checkpoint recorded."""
        path = Path(path)
        used = min(int(added), self.capacity)  # slots past this were never written: leave them unread and unpaged
        for name in self._ARRAYS:
            disk = np.load(path / f"{name}.npy", mmap_mode="r")
            if disk.shape != getattr(self, name).shape:
                raise ValueError(f"saved replay {name} has shape {disk.shape}, this run needs {getattr(self, name).shape}")
            getattr(self, name)[:used] = disk[:used]
        self.added, self._pos = int(added), int(pos)
        self._mirror, self._mirrored = path, self.added
