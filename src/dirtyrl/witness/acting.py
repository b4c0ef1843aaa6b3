"""What the recorded episodes say about how an agent acted: pure functions on the env record.

The env witness (witness/envs.py) keeps, for every step of every episode, the observation the
env had shown when the action came and the action itself. These functions read that record
without asking the agent anything:

- ``predictability``: how well a key (the current observation, the previous one, the
  episode's first) explains the actions taken. An agent acts on the observation that explains
  its actions best; if an older one beats the current one, it acts on a stale observation.
- ``top_share`` and ``entropy``: one action almost always (no exploration), or actions spread
  evenly (random).
- ``policy_mismatch``: how far the actions taken are from samples of the agent's own
  ``action_probs`` (argmax acting, a fixed action).

Observations are compared as keys (rounded tuples), so these judgements are made only where
the observations take few distinct values, as on the probe envs.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_KEYS = 24  # more distinct observations than this and a majority vote per key overfits
MIN_SAMPLES = 40
STALE_MARGIN = 0.25
STALE_MIN = 0.85
RANDOM_MAX = 0.7
NO_EXPLORE_SHARE = 0.97
MISMATCH_MAX = 0.3


@dataclass
class Episode:
    """One recorded episode: ``observations[t]`` is what the env showed when ``actions[t]`` came."""

    observations: list[Any] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: bool = False
    truncated: bool = False

    @property
    def ret(self) -> float:
        return float(sum(self.rewards))

    @property
    def length(self) -> int:
        return len(self.actions)


def obs_key(obs: Any) -> Hashable:
    """A hashable, rounded form of one observation.

    >>> obs_key(np.array([0.33333, -1.0], np.float32))
    (0.333, -1.0)
    """
    return tuple(np.round(np.asarray(obs, np.float64).ravel(), 3).tolist())


def predictability(keys: Sequence[Hashable], actions: Sequence[int]) -> float | None:
    """Share of ``actions`` a majority vote per key gets right; None with too many keys or samples.

    >>> predictability(["a", "a", "b", "b"] * 10, [0, 0, 1, 1] * 10)
    1.0
    >>> predictability(["a"] * 40, [0, 1] * 20)
    0.5
    """
    groups = _groups(keys, actions)
    if groups is None:
        return None
    return sum(c.most_common(1)[0][1] for c in groups.values()) / len(actions)


def _groups(keys: Sequence[Hashable], actions: Sequence[int]) -> dict[Hashable, Counter] | None:
    """Action counts per key; None when there are too few actions or too many keys to judge."""
    if len(actions) < MIN_SAMPLES:
        return None
    groups: dict[Hashable, Counter] = defaultdict(Counter)
    for k, a in zip(keys, actions, strict=True):
        groups[k][a] += 1
    return groups if len(groups) <= MAX_KEYS else None


def top_share(actions: Sequence[int]) -> float:
    """Share of the most common action.

    >>> top_share([1, 1, 1, 0])
    0.75
    """
    return Counter(actions).most_common(1)[0][1] / len(actions) if actions else 0.0


def entropy(actions: Sequence[int]) -> float:
    """Entropy (nats) of the actions' histogram.

    >>> round(entropy([0, 1] * 5), 4) == round(math.log(2), 4)
    True
    """
    if not actions:
        return 0.0
    p = np.array(list(Counter(actions).values()), np.float64) / len(actions)
    return float(-(p * np.log(p)).sum())


def policy_mismatch(
    keys: Sequence[Hashable], actions: Sequence[int], probs: Callable[[Hashable], Sequence[float]]
) -> float | None:
    """Total-variation distance between the actions taken per key and ``probs(key)``, weighted by
    how often each key came: 0 for samples of the policy, 0.5 for argmax on a uniform policy.

    >>> policy_mismatch(["s"] * 40, [0] * 40, lambda k: [0.5, 0.5])
    0.5
    """
    groups = _groups(keys, actions)
    if groups is None:
        return None
    total = 0.0
    for k, counts in groups.items():
        p = np.asarray(probs(k), np.float64)
        n = sum(counts.values())
        empirical = np.zeros_like(p)
        for a, c in counts.items():
            if 0 <= a < len(p):
                empirical[a] = c / n
        total += n * 0.5 * float(np.abs(empirical - p).sum())
    return total / len(actions)


def late_steps(episodes: Sequence[Episode], fraction: float = 0.3) -> list[Episode]:
    """The episodes that make up the last ``fraction`` of all recorded steps."""
    budget = fraction * sum(e.length for e in episodes)
    out: list[Episode] = []
    for e in reversed(episodes):
        if budget <= 0:
            break
        out.append(e)
        budget -= e.length
    return out[::-1]


def early_actions(episodes: Sequence[Episode], steps: int) -> list[int]:
    out: list[int] = []
    for e in episodes:
        out += e.actions
        if len(out) >= steps:
            break
    return out[:steps]


@dataclass
class ActingEvidence:
    """What the record says; None where it cannot say (too few steps, too many observations)."""

    steps: int
    n_actions: int
    current: float | None = None  # predictability of late actions (t >= 1) from the current obs
    current_all: float | None = None  # ... of every late action (t >= 0), one-step episodes included
    previous: float | None = None  # ... from the previous obs
    first: float | None = None  # ... from the episode's first obs
    late_entropy: float = 0.0
    early_top_share: float = 0.0
    mismatch: float | None = None  # late actions against the agent's own action_probs

    @property
    def stale(self) -> str | None:
        """'previous' or 'first' when an older observation explains the actions better."""
        if self.current is None:
            return None
        for name, value in (("previous", self.previous), ("first", self.first)):
            if value is not None and value >= STALE_MIN and value >= self.current + STALE_MARGIN:
                return name
        return None

    @property
    def random_late(self) -> bool:
        """Late actions spread evenly and explained by no observation."""
        known = [v for v in (self.current_all, self.current, self.previous, self.first) if v is not None]
        if not known or self.n_actions < 2:
            return False
        return max(known) <= RANDOM_MAX and self.late_entropy >= 0.9 * math.log(self.n_actions)

    @property
    def no_exploration(self) -> bool:
        """One action almost always at the start of training."""
        return self.n_actions >= 2 and self.early_top_share >= NO_EXPLORE_SHARE

    @property
    def not_sampled(self) -> bool:
        return self.mismatch is not None and self.mismatch > MISMATCH_MAX

    def describe(self) -> str:
        parts = []
        if self.current is not None:
            shown = [f"current {self.current:.2f}"]
            shown += [f"{n} {v:.2f}" for n, v in (("previous", self.previous), ("first", self.first)) if v is not None]
            parts.append("late actions explained by obs: " + ", ".join(shown))
        parts.append(f"early top action {self.early_top_share:.0%}")
        if self.mismatch is not None:
            parts.append(f"{self.mismatch:.0%} of late actions not samples of action_probs")
        return "; ".join(parts)


def acting_evidence(
    episodes: Sequence[Episode],
    n_actions: int,
    action_probs: Callable[[Any], Sequence[float]] | None = None,
    early: int = 100,
) -> ActingEvidence:
    """Read the record: which observation the late actions follow, how the early ones spread,
    and (with ``action_probs``) how far the late actions are from samples of the policy."""
    steps = sum(e.length for e in episodes)
    ev = ActingEvidence(steps=steps, n_actions=n_actions)
    if not steps:
        return ev
    first_actions = early_actions(episodes, min(early, max(steps // 10, 20)))
    ev.early_top_share = top_share(first_actions) if len(first_actions) >= 20 else 0.0
    late = late_steps(episodes)
    keys: dict[str, list[Hashable]] = {"current": [], "previous": [], "first": []}
    actions: list[int] = []
    for e in late:
        ks = [obs_key(o) for o in e.observations]
        for t in range(1, e.length):
            keys["current"].append(ks[t])
            keys["previous"].append(ks[t - 1])
            keys["first"].append(ks[0])
            actions.append(e.actions[t])
    ev.current = predictability(keys["current"], actions)
    if ev.current is not None:
        ev.previous = predictability(keys["previous"], actions) if any(e.length > 1 for e in late) else None
        ev.first = predictability(keys["first"], actions) if any(e.length > 2 for e in late) else None
    all_late = [a for e in late for a in e.actions]
    ev.late_entropy = entropy(all_late)
    ev.current_all = predictability([obs_key(o) for e in late for o in e.observations], all_late)
    if action_probs is not None:
        late_keys = [obs_key(o) for e in late for o in e.observations]
        first_obs: dict[Hashable, Any] = {}
        for e in late:
            for o in e.observations:
                first_obs.setdefault(obs_key(o), o)
        ev.mismatch = policy_mismatch(late_keys, all_late, lambda k: action_probs(first_obs[k]))
    return ev
