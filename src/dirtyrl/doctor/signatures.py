"""Diagnoses that read signatures: what the checks measured, compared with how known bugs look.

A failed probe says which part of the agent a failure points at; the numbers it measured often
say more. Each signature below is a pattern that one classic bug leaves, and ``diagnose`` puts
the most likely cause first in the "likely broken part" column of every failed row. Root causes
are chosen per algorithm, from the most specific evidence to the least:

1. a data-path self-test that failed names the function and, where the output matched a known
   wrong variant, the bug (``vpg loss`` matching a flipped sign, ``dqn td loss`` matching
   "truncation treated as terminal", a replay stack with frames of the previous episode);
2. what the witnesses saw (doctor/witnessing.py): gradients carried over from the previous
   update, parameters in no optimizer, zero/NaN/exploding gradients; actions that follow a stale
   observation, are not samples of the policy, or explore backwards; a target network that never
   moves (a copy of the Q-network's shapes whose weights never change);
3. Q = r / (1 - gamma) on probe 1, a one-step episode: bootstrapping through the terminal state;
4. a lower value than 1 / (1 - gamma) on probe 8 while probe 1 is right: truncation treated as
   terminal;
5. Q(s0) = 1 on probe 3: the discount is ignored;
6. the training episodes' return far from the return of the same agent acting on the current
   observation: an acting bug (a stale observation on probe 6; actions not sampled from the
   policy when the policy is still uniform);
7. the opposite action learned: with probes 1-3 right (DQN), the values are attached to the
   wrong action (action indexing); otherwise a flipped sign;
8. the steps of probe 10 a policy gets wrong: step 1 only, rewards summed forward in time;
   step 0 only, rewards-to-go reversed; steps 0 and 2, rewards-to-go shifted one step;
9. only probe 9 failing: frame history; only probe 7 or 10 (of 4-7, 10): credit one step off in
   time; only probe 6 (of 4-7): a stale observation.
"""

from __future__ import annotations

from dirtyrl.doctor.checks import PART, Result

SELFTEST_CAUSES = {
    "frames from the previous episode in the stack": "frame history leaking across an episode boundary in the replay buffer",
    "bootstrapping through terminal states": "done masking / bootstrapping through terminal states",
    "truncation treated as terminal": "time-limit truncation treated as terminal: truncated transitions must bootstrap",
    "discount ignored": "the discount is ignored (as if gamma = 1)",
    "acted on another observation": "acting on a stale observation (the action does not follow the current obs)",
    "observation stored": "a stale observation stored: the batch pairs actions with the wrong observations",
    "action stored": "action indexing: the stored action is not the one played",
    "reward stored": "credit assigned to the wrong time step: rewards stored out of step",
    "actions are not samples of the policy": "acting: actions are not samples of the policy (argmax, fixed action)",
    "advantages one step off": "credit assigned to the wrong time step: advantages shifted against the actions",
    "shifted one step in time": "credit assigned to the wrong time step: rewards-to-go shifted by one step",
    "rewards summed forward in time": "credit assigned to the wrong time step: rewards summed forward (past, not future)",
    "future rewards only (r_t left out)": "credit assigned to the wrong time step: G_t leaves out r_t (starts at t+1)",
    "values differ": "values differ from the slow reference",
    "advantages standardised without an epsilon": (
        "advantages standardised without an epsilon: (G - mean) / std is NaN when every return in a batch is equal"
    ),
}


def _cause_of_selftest(r: Result) -> str | None:
    bug = r.data.get("bug")
    if bug is None:
        return None
    return SELFTEST_CAUSES.get(bug, bug) + f" ({r.check})"


def _near(x: float | None, y: float, tol: float) -> bool:
    return x is not None and abs(x - y) <= tol


def acting_gap(r: Result) -> str | None:
    """Training return far from the evaluation return of the same agent on the current observation."""
    trained, evaluated, optimum = r.data.get("train_return"), r.data.get("eval_return"), r.data.get("optimum")
    if trained is None or evaluated is None or optimum is None or abs(trained - evaluated) < 0.8 * optimum:
        return None
    gap = f"training return {trained:+.2f}, the same agent acting on the current observation {evaluated:+.2f}"
    p_right = r.data.get("p_right")
    if r.data.get("probe") == 6:
        return f"acting on a stale observation (obs = next_obs?): {gap}"
    if p_right is not None and all(abs(p - 0.5) < 0.15 for p in p_right) and trained > evaluated:
        return f"acting: the actions played were never sampled from the policy (pi is still uniform): {gap}"
    return f"acting: the actions played are not the ones the agent chooses (action mapping, stale observation): {gap}"


def opposite(r: Result) -> bool:
    p_right = r.data.get("p_right")
    if p_right is not None:
        return min(p_right) < 0.1
    q, target = r.data.get("q"), r.data.get("q_target")
    return bool(q) and r.data.get("probe") in (4, 5) and all(v * t < 0 for v, t in zip(q, target, strict=True))


def root_cause(algo: str, results: list[Result]) -> str | None:
    """The single most likely cause behind the failures of one algorithm's rows."""
    mine = [r for r in results if r.algo == algo]
    probes = {r.data["probe"]: r for r in mine if "probe" in r.data}
    failed = {n for n, r in probes.items() if not r.passed}
    for r in mine:
        if not r.passed and "probe" not in r.data and (cause := _cause_of_selftest(r)):
            return cause
    for check in ("gradients", "acting"):  # what the witnesses saw outranks what the results suggest
        for r in mine:
            if r.check == check and not r.passed and "cause" in r.data:
                return r.data["cause"]
    if not failed:
        return None
    return _target_signature(probes, failed) or _value_signature(probes) or _behaviour_signature(algo, probes, failed)


def _target_signature(probes: dict[int, Result], failed: set[int]) -> str | None:
    """A copy of the Q-network that no optimizer steps and that never changed: a frozen target."""
    for n in sorted(failed):
        witness = probes[n].data.get("witness")
        if witness is not None and witness.frozen_copies:
            return (
                f"the target network never moves: {witness.frozen_copies[0]}, which no optimizer steps, has the "
                "Q-network's shapes and kept its first weights for the whole run; copy the online weights into it "
                "every N steps"
            )
    return None


def _value_signature(probes: dict[int, Result]) -> str | None:
    """Signatures in the learned values: terminal bootstrap, truncation, discount."""
    p1 = probes.get(1)
    if p1 is not None and not p1.passed and p1.data.get("q"):
        g = p1.data["gamma"]
        if _near(p1.data["q"][0], 1.0 / (1.0 - g), 0.3):
            return (
                f"done masking / bootstrapping through terminal: Q = {p1.data['q'][0]:.2f} = r/(1-gamma) on a one-step "
                "episode; the TD target must multiply the next value by (1 - terminated)"
            )
    p8 = probes.get(8)
    if p8 is not None and not p8.passed and p8.data.get("q") and (p1 is None or p1.passed):
        want = p8.data["q_target"][0]
        if p8.data["q"][0] < want:
            return (
                f"time-limit truncation treated as terminal: Q = {p8.data['q'][0]:.2f} < 1/(1-gamma) = {want:.2f} "
                "on a task that never ends; bootstrap unless *terminated* (truncated still bootstraps)"
            )
    p3 = probes.get(3)
    if p3 is not None and not p3.passed and p3.data.get("q") and all(_near(v, 1.0, 0.2) for v in p3.data["q"]):
        return "the discount is ignored (Q(s0) = 1, as if gamma = 1)"
    return None


# Probe 10 (envs/probes.py TimeCreditProbe): P(right) at steps 0-3, in step order. Which steps a
# policy gets wrong says how its credit was misplaced in time.
TIME_PATTERNS = (
    (
        "RWR",
        "rewards summed forward in time: each step credited with the rewards before it, not after "
        "(np.cumsum, or G accumulated from the episode's start), so step 1 declines the investment that pays later",
    ),
    (
        "WRR",
        "rewards-to-go reversed in time: step 0 credited with the last step's return (G_t written to step T-1-t), "
        "so it declines the loan whose cost comes last",
    ),
    (
        "WRW",
        "rewards-to-go shifted one step: G_{t+1} credited to step t (r_t left out), so each loan is credited "
        "with its repayment only",
    ),
)


def credit_in_time(r: Result) -> str | None:
    """Probe 10's wrong steps matched against the patterns of the classic credit bugs."""
    p_right = r.data.get("p_right")
    if r.data.get("probe") != 10 or not p_right or len(p_right) != 4:
        return None
    # W: prefers the wrong action; R: right; ?: undecided. Step 3 is left out: a shifted G gives
    # it no credit at all, so it goes wherever the shared bias drifts.
    marks = "".join("W" if p < 0.5 else "R" if p >= 0.9 else "?" for p in p_right[:3])
    wrong = ", ".join(str(i) for i, p in enumerate(p_right) if p < 0.5)
    for pattern, cause in TIME_PATTERNS:
        if marks == pattern:
            return f"credit assigned to the wrong time step (probe 10 wrong at step {wrong}): {cause}"
    return None


def _behaviour_signature(algo: str, probes: dict[int, Result], failed: set[int]) -> str | None:
    """Signatures in what the agent did: acting gaps, opposite actions, which timed probe failed."""
    for n in sorted(failed):
        if cause := acting_gap(probes[n]):
            return cause
    for n in sorted(failed & {4, 5}):
        if opposite(probes[n]):
            single_action_ok = all(probes[k].passed for k in (1, 2, 3) if k in probes)
            if algo == "dqn" and single_action_ok and {1, 2, 3} & set(probes):
                return "action indexing: Q(s, a) is taken at the wrong action (the one-action probes 1-3 are right)"
            return "it learned the OPPOSITE action: a flipped sign (loss, advantage or reward)"
    if failed == {9}:
        return "frame history: the stack must hold the previous frame, zero-padded before the episode's first frame"
    if 10 in failed and (cause := credit_in_time(probes[10])):
        return cause
    if failed & {7, 10} and not failed & {4, 5, 6}:
        return "credit assigned to the wrong time step: the reward reaches an action other than the one that earned it"
    if 6 in failed and not failed & {4, 5, 7}:
        return "acting on a stale observation: right when the observation is fixed (probe 5), wrong when it changes"
    return None


def diagnose(results: list[Result]) -> list[Result]:
    """Put the most likely cause first in every failed row (in place; returns ``results``)."""
    for algo in {r.algo for r in results}:
        cause = root_cause(algo, results)
        for r in results:
            if r.algo != algo or r.passed:
                continue
            base = r.data.setdefault("part", r.suspect)  # idempotent: diagnose may run twice
            own = _cause_of_selftest(r)
            if own is not None:
                r.suspect = f"{own}; {base}"
            elif cause is not None and "probe" in r.data:
                r.suspect = f"{cause}; {PART[r.data['probe']]}"
    return results
