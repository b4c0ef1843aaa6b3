"""Probe environments from the RL-debugging literature (Andy Jones, "Debugging RL, Without
the Agonizing Pain"): tiny problems with a known answer, each isolating one part of an agent.

==========  ========  ====================================  =====================================
probe        actions   reward                                what failing it points at
==========  ========  ====================================  =====================================
Probe1       1         +1 every episode (1 step)             value fitting (V -> 1)
Probe2       1         = observation (+1 or -1)              value depends on the observation
Probe3       1         +1 at the end of 2 steps              discounting (Q(s0) -> gamma)
Probe4       2         +1 for action 0, -1 for action 1      policy gradient / action values
Probe5       2         +1 if action matches the observation  policy conditioned on observation
==========  ========  ====================================  =====================================

Probes that need time (episodes of several steps; one-step episodes cannot show these bugs):

==========  ========  ====================================  =====================================
probe        actions   task                                  what failing it points at
==========  ========  ====================================  =====================================
Probe6       2         4 steps, a fresh +-1 each step; +1    acting on a stale observation
                       if the action matches the CURRENT     (``obs = next_obs`` forgotten, the
                       observation, -1 else                  wrong obs stored or acted on)
Probe7       2         4 steps; a +-1 cue at step 0 only;    credit travelling back in time
                       +1/-1 at the LAST step for matching   (rewards-to-go, reward or action
                       the cue with the step-0 action        stored one step off)
Probe8       1         +1 every step, never terminates, cut  truncation treated as terminal
                       off by a 3-step time limit            (Q must be 1/(1-gamma), not less)
Probe9       2         2 steps of +-1 frames; the right      frame history across episode starts
                       action is 1 iff the PREVIOUS frame    (needs a 2-frame stack; zero-padded
                       was +1 (none at step 0: action 0)     before the episode's first frame)
Probe10      2         4 steps, a reward every step: two     credit in time: rewards-to-go
                       loans (+3 now, -1 at the end) and an  reversed, summed forward or shifted
                       investment (-1 now, +4 next step);    one step each make a policy choose
                       right: 1, 0, 1, 0                     wrong at a step of their own
==========  ========  ====================================  =====================================

Registered as ``dirtyrl/Probe1-v0`` ... ``dirtyrl/Probe10-v0`` so every command can run them.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np


class ProbeEnv(gym.Env):
    """One env class, five behaviours; observations are float32 of shape (1,)."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, probe: int, render_mode: str | None = None) -> None:
        self.probe = probe
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2 if probe >= 4 else 1)
        self.obs = np.zeros(1, np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        value = 0.0
        if self.probe in (2, 5):
            value = float(self.np_random.choice([-1.0, 1.0]))
        self.obs = np.array([value], np.float32)
        return self.obs.copy(), {}

    def step(self, action):
        action = int(action)
        if self.probe == 3 and self.t == 0:
            self.t = 1
            self.obs = np.array([1.0], np.float32)
            return self.obs.copy(), 0.0, False, False, {}
        if self.probe in (1, 3):
            reward = 1.0
        elif self.probe == 2:
            reward = float(self.obs[0])
        elif self.probe == 4:
            reward = 1.0 if action == 0 else -1.0
        else:
            reward = 1.0 if (action == 1) == (self.obs[0] > 0) else -1.0
        return self.obs.copy(), reward, True, False, {}


class CurrentObsProbe(gym.Env):
    """Probe 6: the observation changes every step; only the current one says what to do.

    A fresh +-1 each step for ``length`` steps; reward +1 if the action is 1 exactly when the
    current observation is +1, else -1. Optimal return ``length``; an agent acting on any
    other observation (the first one, the previous one) scores 0 on average.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, length: int = 4, render_mode: str | None = None) -> None:
        self.length = length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.sign = 1.0
        self.t = 0

    def _draw(self) -> np.ndarray:
        self.sign = float(self.np_random.choice([-1.0, 1.0]))
        return np.array([self.sign], np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        reward = 1.0 if (int(action) == 1) == (self.sign > 0) else -1.0
        self.t += 1
        return self._draw(), reward, self.t >= self.length, False, {}


class DelayedCreditProbe(gym.Env):
    """Probe 7: the step-0 action earns a reward paid only at the last step.

    Observation ``[cue, phase, outcome]``: at step 0 the cue is +-1, phase 0, outcome 0; later
    steps show cue 0, phase t/(length-1) and the outcome the step-0 action has locked in (+1 if
    it matched the cue: action 1 for +1, action 0 for -1; -1 otherwise), so the state is Markov
    and a value learner can carry the reward back. Actions after step 0 change nothing. The
    reward, +-1, comes at the end of step ``length - 1``.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, length: int = 4, render_mode: str | None = None) -> None:
        self.length = length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.cue = 1.0
        self.outcome = 0.0
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t, self.outcome = 0, 0.0
        self.cue = float(self.np_random.choice([-1.0, 1.0]))
        return np.array([self.cue, 0.0, 0.0], np.float32), {}

    def step(self, action):
        if self.t == 0:
            self.outcome = 1.0 if (int(action) == 1) == (self.cue > 0) else -1.0
        self.t += 1
        done = self.t >= self.length
        reward = self.outcome if done else 0.0
        obs = np.array([0.0, self.t / (self.length - 1) if not done else 1.0, self.outcome], np.float32)
        return obs, reward, done, False, {}


class EndlessProbe(gym.Env):
    """Probe 8: +1 every step, never terminates; registered with a 3-step time limit.

    The observation never changes, so the one state's value is the discounted sum of an
    endless stream of +1: Q = 1 / (1 - gamma). The time limit ends episodes by *truncation*;
    a learner that treats it as terminal learns a lower value (1.5 at gamma 0.5 with a limit
    of 3 steps: one target in three stops bootstrapping).
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(1)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


class HistoryProbe(gym.Env):
    """Probe 9: what to do now depends on the previous frame, which only a frame stack shows.

    Each step shows a fresh +-1 frame; episodes last 2 steps, so frame stacks often reach back
    to an episode start. Reward +1 if the action is 1 exactly when the *previous* frame was +1,
    else -1; at step 0 there is no previous frame (a zero-padded stack shows 0): action 0 is
    right. Borrowing the previous episode's last frame instead of the zero pad makes the
    step-0 stacks look like step-1 stacks with contradicting rewards.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, length: int = 2, render_mode: str | None = None) -> None:
        self.length = length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.previous = 0.0
        self.current = 0.0
        self.t = 0

    def _draw(self) -> np.ndarray:
        self.previous, self.current = self.current, float(self.np_random.choice([-1.0, 1.0]))
        return np.array([self.current], np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t, self.current = 0, 0.0
        return self._draw(), {}

    def step(self, action):
        reward = 1.0 if (int(action) == 1) == (self.previous > 0) else -1.0
        self.t += 1
        return self._draw(), reward, self.t >= self.length, False, {}


class TimeCreditProbe(gym.Env):
    """Probe 10: a reward at every step, and only credit from the *future* ranks each step's actions.

    Four steps; the right action differs by step (1, 0, 1, 0)::

        step 0  action 1 takes a loan:  +3 now, -1 at step 3 (net +2);   action 0: nothing
        step 1  action 0 invests:       -1 now, +4 at step 2 (net +3);   action 1: nothing
        step 2  action 1 takes a loan:  +3 now, -1 at step 3 (net +2);   action 0: nothing
        step 3  action 0: +1, action 1: -1; and the loans are repaid

    The right actions stay right at any discount from 0.5 to 1 (at gamma 0.5 the investment nets
    -1 + 0.5 * 4 = +1). Optimal return 8. The observation is ``[one-hot of the step (4), what
    step 2 will pay / 4]``: the investment's payout is shown, so a value learner must carry it
    back a step to invest; the repayments are not (a loan is right on its +3 alone, whatever a
    learner makes of the repayment), so no step's observation depends on an earlier loan and a
    wrong choice at step 0 cannot move the states of the later steps. A loan nets +2, not +1, so
    that a mean-baseline policy gradient, whose step-0 credit carries the noise of every later
    step, does not settle on declining it before the signal shows (at +2 - 1, the doctor's VPG
    did for one seed in twelve; at +3 - 1 for none of sixteen).

    Each wrong way of crediting rewards in time ranks some step's actions the wrong way round:

    - summed forward (``np.cumsum(rewards)``, or G accumulated from the episode's start): a step
      is credited with the rewards up to it, not after it; only the investment costs now, so
      step 1 is wrong;
    - reversed (G_t written to step T-1-t): step 0 is credited with G_3 = r_3, where its loan
      only costs, so step 0 is wrong (steps 1-3 still see their own effects);
    - shifted one step (G_{t+1}: r_t left out): a loan is credited with its repayment only, so
      steps 0 and 2 are wrong, and step 3, credited with nothing, is left to chance.
    """

    metadata: ClassVar[dict] = {"render_modes": []}
    LENGTH = 4
    LOAN, REPAY, COST, PAYOUT = 3.0, -1.0, -1.0, 4.0

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (self.LENGTH + 1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0
        self.payout = 0.0  # paid at step 2 (the investment)
        self.repay = 0.0  # paid at step 3 (the loans: -1 each)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.LENGTH + 1, np.float32)
        if self.t < self.LENGTH:
            obs[self.t] = 1.0
        obs[-1] = self.payout / self.PAYOUT
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t, self.payout, self.repay = 0, 0.0, 0.0
        return self._obs(), {}

    def step(self, action):
        action, reward = int(action), 0.0
        if self.t in (0, 2) and action == 1:  # a loan
            reward, self.repay = self.LOAN, self.repay + self.REPAY
        elif self.t == 1 and action == 0:  # the investment
            reward, self.payout = self.COST, self.PAYOUT
        if self.t == 2:
            reward, self.payout = reward + self.payout, 0.0
        elif self.t == 3:
            reward, self.repay = (1.0 if action == 0 else -1.0) + self.repay, 0.0
        self.t += 1
        return self._obs(), reward, self.t >= self.LENGTH, False, {}


PROBE_IDS = [f"dirtyrl/Probe{i}-v0" for i in range(1, 11)]
# Probes 6-10: (entry point, kwargs, reward threshold, time limit)
TIMED_PROBES = {
    6: (CurrentObsProbe, {}, 3.0, None),
    7: (DelayedCreditProbe, {}, 0.8, None),
    8: (EndlessProbe, {}, None, 3),
    9: (HistoryProbe, {}, 1.6, None),
    10: (TimeCreditProbe, {}, 5.5, None),
}


def register_probes() -> None:
    for i, env_id in enumerate(PROBE_IDS, start=1):
        if env_id in gym.registry:
            continue
        if i in TIMED_PROBES:
            entry, kwargs, threshold, limit = TIMED_PROBES[i]
            gym.register(env_id, entry_point=entry, kwargs=kwargs, reward_threshold=threshold, max_episode_steps=limit)
        else:
            # Only the policy probes have a return to reach; the value probes are judged by V and Q.
            threshold = 0.9 if i >= 4 else None
            gym.register(env_id, entry_point=ProbeEnv, kwargs={"probe": i}, reward_threshold=threshold)
