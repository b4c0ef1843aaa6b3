"""Self-tests of the data paths: no learning, each compared with a slow, obviously right reference.

A learning probe that fails says *that* something is wrong; these say *where*, in a fraction
of a second, by running the project's own functions on made-up data:

- ``replay buffer``: ``FrameReplayBuffer`` against a list of whole transitions, on random
  episodes (random lengths, terminations, truncations, histories 1-4, a capacity small enough
  to wrap around many times).
- ``rewards-to-go``: ``returns.rewards_to_go`` against a double loop over the definition.
- ``vpg advantages``: ``vpg.episode_advantages`` against rewards-to-go per episode, mean
  baseline, std scaling.
- ``vpg loss``: the gradient of ``vpg.batched_backward`` against the gradient of
  -mean(log pi(a|s) * A) written out, and against known wrong variants (sign, action index,
  time shift), so a mismatch is named.
- ``vpg acting``: ``vpg.play_episode`` with a policy that copies the current observation into
  its action must record exactly the observation, action and reward of each env step, and with
  a policy of known probabilities its actions must be samples of that policy.
- ``dqn td loss``: ``dqn.td_loss`` against the TD error written out, and against the known
  wrong variants (bootstrapping through terminal states, truncation as terminal, no discount,
  wrong action index, bootstrapping from s instead of s').
- ``pong frames``: the env factory's Pong preprocessing against a pixel-by-pixel loop on real
  ALE frames.
- ``env wrappers``: the env factory's own presets (CartPole, probes, Pong) give the agent the
  env's rewards and ends (doctor/wrappers.py); listed with DQN, whose non-Atari envs are these.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dirtyrl.doctor.checks import Result
from dirtyrl.doctor.wrappers import check_own_wrappers


def _timed(algo: str, check: str, suspect: str, fn: Callable[[], tuple[bool, str, str, dict]]) -> Result:
    start = time.monotonic()
    try:
        passed, measured, expected, data = fn()
    except Exception as exc:  # a crash in the code under test is a failed check, with its message
        passed, measured, expected, data = False, f"raised {type(exc).__name__}: {exc}"[:160], "no error", {}
    return Result(algo, check, passed, measured, expected, suspect, time.monotonic() - start, data)


# ---------------------------------------------------------------------------------------------
# Replay buffer
# ---------------------------------------------------------------------------------------------


def reference_transitions(episodes: list[list[np.ndarray]], history: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(obs stack, next_obs stack) of every transition, oldest frame first, zeros before the reset frame.

    >>> f = [np.array([1.0]), np.array([2.0])]
    >>> [(o.tolist(), n.tolist()) for o, n in reference_transitions([f], history=2)]
    [([0.0, 1.0], [1.0, 2.0])]
    """
    out = []
    for frames in episodes:
        zero = np.zeros_like(frames[0])
        padded = [zero] * (history - 1) + list(frames)
        for t in range(1, len(frames)):
            out.append((np.concatenate(padded[t - 1 : t - 1 + history]), np.concatenate(padded[t : t + history])))
    return out


def check_replay_buffer(seed: int = 0, rounds: int = 6) -> tuple[bool, str, str, dict]:
    from dirtyrl.buffers import FrameReplayBuffer

    rng = np.random.default_rng(seed)
    compared = 0
    for round_ in range(rounds):
        history = int(rng.integers(1, 5))
        capacity = int(rng.integers(history + 8, 40))
        frame_shape = (int(rng.integers(1, 3)), 2)
        buffer = FrameReplayBuffer(capacity, frame_shape, history, np.float32, 4)
        # Reference: one record per slot ever written; None marks an episode's reset frame.
        slots: list[tuple | None] = []
        episodes: list[list[np.ndarray]] = []
        for _ in range(int(rng.integers(4, 12))):
            frames = [rng.normal(size=frame_shape).astype(np.float32)]
            buffer.start_episode(frames[0])
            slots.append(None)
            length = int(rng.integers(1, 9))
            for t in range(length):
                last = t == length - 1
                terminated = last and bool(rng.random() < 0.5)
                truncated = last and not terminated and bool(rng.random() < 0.7)
                action, reward = int(rng.integers(4)), float(rng.normal())
                frames.append(rng.normal(size=frame_shape).astype(np.float32))
                buffer.add(action, reward, frames[-1], terminated, truncated)
                slots.append((len(episodes), t, action, reward, terminated, truncated))
            episodes.append(frames)
        stacks = reference_transitions([[f.reshape(frame_shape) for f in ep] for ep in episodes], history)
        # Transition index of each step slot, in the order reference_transitions lists them.
        index, lookup = 0, {}
        for g, record in enumerate(slots):
            if record is not None:
                lookup[g] = index
                index += 1
        added = len(slots)
        if buffer.added != added:
            return False, f"added = {buffer.added} after {added} writes", "one slot per write", {"bug": "count"}
        lo = max(0, added - capacity + history)  # slots whose whole stack is still in memory
        for g in range(lo, added):
            record = slots[g]
            if record is None:
                continue
            _, _, action, reward, terminated, truncated = record
            obs, next_obs = stacks[lookup[g]]
            batch = buffer.gather(np.array([g % capacity]))
            got_obs, got_next = batch.obs[0].reshape(-1), batch.next_obs[0].reshape(-1)
            problems = []
            if not np.array_equal(got_obs, obs.reshape(-1)) or not np.array_equal(got_next, next_obs.reshape(-1)):
                k_frame = int(np.prod(frame_shape))
                pos = record[1] + 1
                leaked = pos < history and not np.array_equal(
                    got_obs[: k_frame * (history - pos)], np.zeros(k_frame * (history - pos))
                )
                problems.append("frames from the previous episode in the stack" if leaked else "obs/next_obs frames differ")
            if int(batch.actions[0]) != action:
                problems.append("action stored")
            if not np.isclose(float(batch.rewards[0]), reward):
                problems.append("reward stored")
            if bool(batch.terminated[0]) != terminated or bool(batch.truncated[0]) != truncated:
                problems.append("terminated/truncated flags differ")
            if problems:
                measured = f"slot {g} (history {history}, capacity {capacity}): {problems[0]}"
                return False, measured, "identical to the reference", {"bug": problems[0], "round": round_}
            compared += 1
        drawn = buffer.sample_indices(256, rng)
        valid = {g % capacity for g in range(lo, added) if slots[g] is not None}
        stray = [int(i) for i in drawn if int(i) not in valid]
        if stray:
            return (
                False,
                f"sampled slot {stray[0]}: a reset frame or an overwritten stack",
                "only complete transitions",
                {"bug": "sampling"},
            )
    return True, f"{compared} transitions identical ({rounds} random buffers)", "identical to the reference", {}


# ---------------------------------------------------------------------------------------------
# Returns and advantages
# ---------------------------------------------------------------------------------------------


def brute_rewards_to_go(rewards: np.ndarray, gamma: float, reset_on_nonzero: bool) -> np.ndarray:
    """G_t = sum_{u >= t} gamma^(u - t) r_u, stopping after the first non-zero reward if asked."""
    out = np.zeros(len(rewards))
    for t in range(len(rewards)):
        for u in range(t, len(rewards)):
            out[t] += gamma ** (u - t) * rewards[u]
            if reset_on_nonzero and rewards[u] != 0:
                break
    return out


def check_rewards_to_go(seed: int = 0) -> tuple[bool, str, str, dict]:
    from dirtyrl.returns import rewards_to_go

    rng = np.random.default_rng(seed)
    for _ in range(30):
        n = int(rng.integers(1, 15))
        rewards = rng.choice([0.0, 0.0, 1.0, -1.0, 0.5], size=n)
        gamma = float(rng.choice([0.0, 0.5, 0.9, 1.0]))
        reset = bool(rng.random() < 0.5)
        got, want = rewards_to_go(rewards.copy(), gamma, reset_on_nonzero=reset), brute_rewards_to_go(rewards, gamma, reset)
        if got.shape != want.shape or not np.allclose(got, want):
            shifted = len(got) == len(want) and n > 1 and np.allclose(got[:-1], want[1:])
            bug = "shifted one step in time" if shifted else "values differ"
            return (
                False,
                f"r={rewards.tolist()} gamma={gamma} reset={reset}: {np.round(got, 3).tolist()}",
                (f"{np.round(want, 3).tolist()}"),
                {"bug": bug},
            )
    return True, "30 random episodes match the double loop", "G_t = sum gamma^(u-t) r_u", {}


def advantage_variants(episodes: list, gamma: float, standardize: bool) -> dict[str, np.ndarray]:
    """The right advantages and the classic wrong ones, each through the same baseline (and scaling)."""

    def baseline(returns: np.ndarray) -> np.ndarray:
        adv = returns - returns.mean()
        return adv / (returns.std() + 1e-8) if standardize else adv

    per_episode = [brute_rewards_to_go(np.array(ep.rewards), gamma, False) for ep in episodes]
    return {
        "correct": baseline(np.concatenate(per_episode)),
        "flipped sign": -baseline(np.concatenate(per_episode)),
        "advantages one step off": baseline(np.concatenate([np.append(g[1:], 0.0) for g in per_episode])),
        "rewards summed forward in time": baseline(
            np.concatenate([brute_rewards_to_go(np.array(ep.rewards[::-1]), gamma, False)[::-1] for ep in episodes])
        ),
        "rewards summed forward in time ": baseline(np.concatenate([np.cumsum(ep.rewards) for ep in episodes])),
        "future rewards only (r_t left out)": baseline(
            np.concatenate([g - np.array(ep.rewards) for g, ep in zip(per_episode, episodes, strict=True)])
        ),
    }


def check_vpg_advantages(seed: int = 0) -> tuple[bool, str, str, dict]:
    from dirtyrl import distributed
    from dirtyrl.algos import vpg

    rng = np.random.default_rng(seed)
    episodes = [vpg.Episode([], [0] * n, list(rng.choice([0.0, 1.0, -1.0], size=n)), []) for n in (3, 1, 5, 2)]
    for standardize in (False, True):
        got = np.asarray(vpg.episode_advantages(episodes, 0.9, False, standardize, distributed.Dist()))
        variants = advantage_variants(episodes, 0.9, standardize)
        want = variants["correct"]
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-5):
            match = "values differ"
            if got.shape == want.shape:
                match = next((k for k, v in variants.items() if np.allclose(got, v, atol=1e-5)), "values differ").strip()
            shown = f"standardize={standardize}: {np.round(got, 3).tolist()}"
            return False, shown, f"{np.round(want, 3).tolist()}", {"bug": match}
    return True, "rewards-to-go - mean (/ std) on 4 episodes", "matches the reference", {}


# ---------------------------------------------------------------------------------------------
# VPG loss and acting
# ---------------------------------------------------------------------------------------------


def check_vpg_loss(seed: int = 0) -> tuple[bool, str, str, dict]:
    """The gradient ``vpg.batched_backward`` leaves in .grad, against the written-out loss and its wrong variants."""
    from dirtyrl.algos import vpg
    from dirtyrl.nets import KarpathyPolicy

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    policy = KarpathyPolicy(3, 3, hidden=8, zero_init_last=False, bias=True)
    episodes = [
        vpg.Episode([rng.normal(size=3).astype(np.float32) for _ in range(n)], list(rng.integers(3, size=n)), [0.0] * n, [])
        for n in (4, 3, 5)
    ]
    adv = rng.normal(size=12)
    policy.zero_grad(set_to_none=True)
    vpg.batched_backward(policy, episodes, adv.copy(), 12, False, torch.device("cpu"))
    got = (
        torch.cat([p.grad.reshape(-1) for p in policy.parameters()])
        if all(p.grad is not None for p in policy.parameters())
        else None
    )
    x = torch.as_tensor(np.stack([o for ep in episodes for o in ep.obs]))
    actions = torch.as_tensor(np.concatenate([ep.actions for ep in episodes]))
    a = torch.as_tensor(adv, dtype=torch.float32)

    def grad_of(loss_fn) -> torch.Tensor:
        policy.zero_grad(set_to_none=True)
        loss_fn(torch.log_softmax(policy(x), -1)).backward()
        return torch.cat([p.grad.reshape(-1) for p in policy.parameters()])

    variants = {
        "correct": lambda lp: -(lp.gather(1, actions[:, None]).squeeze(1) * a).sum() / 12,
        "flipped sign": lambda lp: (lp.gather(1, actions[:, None]).squeeze(1) * a).sum() / 12,
        "action indexing": lambda lp: -(lp.gather(1, ((actions + 1) % 3)[:, None]).squeeze(1) * a).sum() / 12,
        "advantages one step off": lambda lp: -(lp.gather(1, actions[:, None]).squeeze(1) * torch.roll(a, 1)).sum() / 12,
        "probabilities instead of log-probabilities": lambda lp: (
            -(lp.exp().gather(1, actions[:, None]).squeeze(1) * a).sum() / 12
        ),
    }
    grads = {name: grad_of(fn) for name, fn in variants.items()}
    policy.zero_grad(set_to_none=True)
    if got is None:
        return False, "some parameters got no gradient", "every parameter", {"bug": "unreachable"}
    if torch.allclose(got, grads["correct"], atol=1e-5):
        return True, "gradient of -mean(log pi(a|s) * A)", "matches the reference", {}
    match = next((name for name, g in grads.items() if torch.allclose(got, g, atol=1e-5)), "no known variant")
    return False, f"gradient matches: {match}", "-mean(log pi(a|s) * A)", {"bug": match}


class _Recorder:
    """Wraps an env and writes down, for every step, the observation the agent had, its action and the reward."""

    def __init__(self, env: Any) -> None:
        self.env, self.log, self.obs = env, [], None
        self.observation_space, self.action_space = env.observation_space, env.action_space

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.obs = np.array(obs, copy=True)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.append((self.obs, int(action), float(reward)))
        self.obs = np.array(obs, copy=True)
        return obs, reward, terminated, truncated, info


def check_vpg_acting(seed: int = 0) -> tuple[bool, str, str, dict]:
    """``vpg.play_episode`` on probe 6: what it records must be what happened, and actions must
    follow pi(.|current obs)."""
    from dirtyrl.algos import vpg
    from dirtyrl.envs import make_env
    from dirtyrl.nets import KarpathyPolicy

    env = _Recorder(make_env("dirtyrl/Probe6-v0"))
    policy = KarpathyPolicy(1, 2, hidden=2, zero_init_last=False, bias=True)
    with torch.no_grad():  # action 1 exactly when obs = +1, with probability 1 - e^-40
        policy.fc1.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        policy.fc1.bias.zero_()
        policy.fc2.weight.copy_(torch.tensor([[-20.0, 20.0], [20.0, -20.0]]))
        policy.fc2.bias.zero_()
    device = torch.device("cpu")
    rng = np.random.default_rng(seed)
    mismatches = {"observation stored": 0, "action stored": 0, "reward stored": 0, "acted on another observation": 0}
    steps = 0
    for i in range(25):
        env.log.clear()
        ep = vpg.play_episode(env, vpg.Actor(policy, sparse=False), rng, seed + i, None, device, lambda: None, lambda w: None)
        if len(ep.actions) != len(env.log) or len(ep.obs) != len(env.log) or len(ep.rewards) != len(env.log):
            return (
                False,
                f"recorded {len(ep.actions)} steps of a {len(env.log)}-step episode",
                "one record per step",
                {"bug": "observation stored"},
            )
        for t, (obs, action, reward) in enumerate(env.log):
            steps += 1
            mismatches["observation stored"] += not np.allclose(np.asarray(ep.obs[t]).reshape(-1), obs.reshape(-1))
            mismatches["action stored"] += ep.actions[t] != action
            mismatches["reward stored"] += ep.rewards[t] != reward
            mismatches["acted on another observation"] += action != int(obs[0] > 0)
    # Samples: a policy with P(action 1) = 0.8 in every state must play action 1 about 80% of the time.
    with torch.no_grad():
        policy.fc1.weight.zero_()
        policy.fc2.weight.zero_()
        policy.fc2.bias.copy_(torch.tensor([0.0, float(np.log(4.0))]))
    actions = []
    for i in range(100):
        actions += vpg.play_episode(
            env,
            vpg.Actor(policy, sparse=False),
            rng,
            seed + 100 + i,
            None,
            device,
            lambda: None,
            lambda w: None,
        ).actions
    share = float(np.mean(actions))
    if mismatches["acted on another observation"] == steps:  # every action the other one: a mapping, not a delay
        mismatches["action indexing (every action played is the other one)"] = mismatches.pop("acted on another observation")
    bad = {k: v for k, v in mismatches.items() if v}
    if abs(share - 0.8) > 0.08:
        bad["actions are not samples of the policy"] = 1
    if bad:
        first = next(iter(bad))
        return (
            False,
            f"{first} ({bad[first]} of {steps} steps); P(a=1) played {share:.2f}",
            "all aligned; 0.80",
            {
                "bug": first,
                "sampled_share": share,
            },
        )
    return True, f"{steps} steps aligned; P(a=1)=0.80 played {share:.2f}", "aligned, samples of pi", {}


# ---------------------------------------------------------------------------------------------
# DQN TD loss
# ---------------------------------------------------------------------------------------------


def check_dqn_td_loss(seed: int = 0) -> tuple[bool, str, str, dict]:
    """``dqn.td_loss`` on a hand-made batch against the TD error written out and its wrong variants."""
    import dataclasses

    from dirtyrl.algos import dqn
    from dirtyrl.buffers import Batch
    from dirtyrl.config import EnvConfig
    from dirtyrl.qnets import make_qnet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    b, gamma = 16, 0.7
    cfg = dqn.resolve(dqn.Config(env=EnvConfig(env="CartPole-v1"), batch_size=b, learning_starts=b, gamma=gamma))
    cfg = dataclasses.replace(cfg, double=False, loss="mse")
    q = make_qnet("mlp", (4,), 3, hidden=(16,))
    target = make_qnet("mlp", (4,), 3, hidden=(16,))
    target.requires_grad_(False)
    obs, next_obs = rng.normal(size=(b, 4)).astype(np.float32), rng.normal(size=(b, 4)).astype(np.float32)
    actions = rng.integers(3, size=b).astype(np.int64)
    rewards = rng.normal(size=b).astype(np.float32)
    terminated = np.arange(b) % 4 == 1
    truncated = np.arange(b) % 4 == 2
    batch = Batch(obs, actions, rewards, next_obs, terminated, truncated, np.arange(b))
    with torch.no_grad():
        loss = float(dqn.td_loss(q, target, batch, slice(None), cfg, torch.device("cpu"))[0])
        o, n = torch.as_tensor(obs), torch.as_tensor(next_obs)
        a, r = torch.as_tensor(actions), torch.as_tensor(rewards)
        term, trunc = torch.as_tensor(terminated).float(), torch.as_tensor(truncated).float()
        v_next, v_same = target(n).max(1).values, target(o).max(1).values

        def mse(q_taken, y):
            return float(((q_taken - y) ** 2).sum() / b)

        q_a = q(o).gather(1, a[:, None]).squeeze(1)
        variants = {
            "correct": mse(q_a, r + gamma * (1 - term) * v_next),
            "bootstrapping through terminal states": mse(q_a, r + gamma * v_next),
            "truncation treated as terminal": mse(q_a, r + gamma * (1 - torch.clamp(term + trunc, max=1)) * v_next),
            "discount ignored": mse(q_a, r + (1 - term) * v_next),
            "action indexing": mse(q(o).gather(1, ((a + 1) % 3)[:, None]).squeeze(1), r + gamma * (1 - term) * v_next),
            "bootstrapping from s instead of s'": mse(q_a, r + gamma * (1 - term) * v_same),
            "flipped sign of the reward": mse(q_a, -r + gamma * (1 - term) * v_next),
            "next-state value from the online net": mse(q_a, r + gamma * (1 - term) * q(n).max(1).values),
        }
    if abs(loss - variants["correct"]) <= 1e-5 * max(1.0, abs(loss)):
        return True, f"loss {loss:.5f}", "matches (r + gamma (1 - terminated) max Q' - Q)^2", {}
    match = next((k for k, v in variants.items() if abs(loss - v) <= 1e-5 * max(1.0, abs(v))), "no known variant")
    return False, f"loss {loss:.5f} matches: {match}", f"{variants['correct']:.5f}", {"bug": match}


# ---------------------------------------------------------------------------------------------
# Pong preprocessing
# ---------------------------------------------------------------------------------------------


def slow_pong_frame(raw: np.ndarray) -> np.ndarray:
    """Karpathy's preprocessing, one pixel at a time: rows 34..193 and every other column of the
    red channel, 255 where it is neither background red (144, 109), else 0."""
    out = np.zeros((80, 80), np.uint8)
    for i in range(80):
        for j in range(80):
            red = int(raw[34 + 2 * i, 2 * j, 0])
            out[i, j] = 0 if red in (144, 109) else 255
    return out


def check_pong_frames(seed: int = 0, steps: int = 12) -> tuple[bool, str, str, dict]:
    from dirtyrl.envs import make_env

    env = make_env("pong", actions=3, sticky=0.0)
    rng = np.random.default_rng(seed)
    try:
        obs, _ = env.reset(seed=seed)
        previous = None
        for t in range(steps + 1):
            raw = env.unwrapped.ale.getScreenRGB()
            frame = slow_pong_frame(raw)
            diff = np.zeros((80, 80), np.int8) if previous is None else (frame > 0).astype(np.int8) - (previous > 0)
            if obs.shape != (80, 80) or not np.array_equal(obs, diff):
                wrong = int((np.asarray(obs).reshape(diff.shape) != diff).sum()) if obs.size == diff.size else -1
                return (
                    False,
                    f"step {t}: {wrong} of 6400 pixels differ (shape {obs.shape})",
                    "identical",
                    {"bug": "preprocessing"},
                )
            previous = frame
            obs, *_ = env.step(int(rng.integers(3)))
    finally:
        env.close()
    return True, f"{steps + 1} real frames identical", "pixel loop reference", {}


# ---------------------------------------------------------------------------------------------
# The self-test rows of each algorithm
# ---------------------------------------------------------------------------------------------


VPG_SELFTESTS = {
    "rewards-to-go": ("returns.rewards_to_go: credit to the wrong step or wrong discounting", check_rewards_to_go),
    "vpg advantages": ("vpg.episode_advantages: rewards-to-go, baseline or scaling", check_vpg_advantages),
    "vpg loss": ("vpg.batched_backward: the policy-gradient loss", check_vpg_loss),
    "vpg acting": ("vpg.play_episode / vpg.Actor / vpg.sample: acting and recording", check_vpg_acting),
    "pong frames": ("envs/pong.py: Pong preprocessing (crop, downsample, background, difference)", check_pong_frames),
}
DQN_SELFTESTS = {
    "replay buffer": ("buffers.FrameReplayBuffer: stored or rebuilt transitions", check_replay_buffer),
    "dqn td loss": ("dqn.td_loss: the TD target or the Q of the action taken", check_dqn_td_loss),
    "env wrappers": ("envs/: a wrapper of the env factory changes rewards or episode ends", check_own_wrappers),
}


def _run(algo: str, table: dict, seed: int, names: list[str] | None) -> list[Result]:
    unknown = set(names or []) - set(table)
    if unknown:
        raise ValueError(f"unknown {algo} self-tests {sorted(unknown)}; known: {sorted(table)}")
    return [
        _timed(algo, name, suspect, lambda fn=fn: fn(seed))
        for name, (suspect, fn) in table.items()
        if names is None or name in names
    ]


def vpg_selftests(seed: int, names: list[str] | None = None) -> list[Result]:
    return _run("vpg", VPG_SELFTESTS, seed, names)


def dqn_selftests(seed: int, names: list[str] | None = None) -> list[Result]:
    return _run("dqn", DQN_SELFTESTS, seed, names)
