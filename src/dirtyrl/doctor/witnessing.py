"""The witnesses around one probe run: what the agent really did while it trained.

``with ProbeWatch() as watch: agent = make_agent(...)`` records every episode the agent played
on the probe env (the env witness) and every gradient and optimizer step (the gradient
witness); ``watch.result(agent, n_actions)`` turns that into ``ProbeWitness``, which ``judge``
and the signatures read instead of anything the agent reports about itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dirtyrl.witness import EnvWitness, Finding, GradientWitness
from dirtyrl.witness.acting import ActingEvidence, Episode, acting_evidence

# Findings that the probes' design makes normal: probes 1, 4 and 8 show one constant
# observation (0: the first layer's weights get exactly zero gradients), and a learner that has
# solved a probe sees equal returns, so a mean baseline leaves all-zero advantages. Parameters
# that no gradient ever reaches are still found (``never_reached``).
PROBE_NORMAL = {"constant_input", "zero_grad"}
TRAIN_WINDOW = 20
ACTING_ORDER = [
    "stale observation",
    "not samples of the policy",
    "exploration backwards",
    "no exploration early",
    "random late",
]


@dataclass
class ProbeWitness:
    episodes: list[Episode]
    findings: list[Finding] = field(default_factory=list)
    carried_share: float = 0.0
    frozen_copies: list[str] = field(default_factory=list)
    evidence: ActingEvidence | None = None

    def train_return(self) -> float | None:
        """Mean return of the last 20 training episodes, as the env saw them."""
        if not self.episodes:
            return None
        return float(np.mean([e.ret for e in self.episodes[-TRAIN_WINDOW:]]))


class ProbeWatch:
    """Both witnesses, installed for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self.envs = EnvWitness(keep_observations=True)
        self.grads = GradientWitness("record")

    def __enter__(self) -> ProbeWatch:
        self.envs.install()
        try:
            self.grads.install()
        except BaseException:
            self.envs.remove()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.grads.remove()
        self.envs.remove()

    def result(self, agent: Any, n_actions: int) -> ProbeWitness:
        findings = [f for f in self.grads.close() if f.check not in PROBE_NORMAL]
        if not any(m.root and m.input_varied for m in self.grads.modules.values()):
            # One observation (probes 1, 4, 8 show 0): a hidden layer of W @ 0 is zero for "every sample".
            findings = [f for f in findings if f.check != "dead_units"]
        probs = getattr(agent, "action_probs", None)
        return ProbeWitness(
            episodes=self.envs.episodes,
            findings=findings,
            carried_share=self.grads.carried_share(),
            frozen_copies=self.grads.frozen_copies(),
            evidence=acting_evidence(self.envs.episodes, n_actions, probs) if n_actions >= 2 else None,
        )


def _acting_problem(r: Any, w: ProbeWitness) -> tuple[str, str] | None:
    """What the env record says went wrong in how the agent acted on one probe: (a short label,
    the diagnosis), or None."""
    from dirtyrl.doctor.probes import PROBES

    ev = w.evidence
    if ev is None:
        return None
    acts_on_history = "history" in PROBES[r.data["probe"]].dqn  # probe 9: the previous frame is the right cue
    if ev.stale and not acts_on_history:
        older = ev.first if ev.stale == "first" else ev.previous
        return f"stale observation ({ev.stale})", (
            f"acting on a stale observation: the late training actions follow the {ev.stale} observation "
            f"({older:.0%} explained) better than the current one ({ev.current:.0%})"
        )
    if ev.not_sampled:
        return "not samples of the policy", (
            f"acting: the actions played are not samples of the agent's own action_probs ({ev.mismatch:.0%} of late "
            "actions off; argmax or a fixed action instead of a sample)"
        )
    # Late actions at random are normal where the action no longer matters (probe 7 after step 0):
    # they count with no exploration early (a schedule run backwards), or where the agent, acting
    # itself, does far better than its training episodes did.
    optimum, evaluated, trained = r.data.get("optimum"), r.data.get("eval_return"), r.data.get("train_return")
    gap = None not in (optimum, evaluated, trained) and evaluated - trained >= 0.5 * optimum
    late_random = ev.random_late and (ev.mismatch is None or ev.not_sampled) and (ev.no_exploration or gap)
    if ev.no_exploration and late_random:
        return "exploration backwards", (
            f"exploration runs backwards: one action in {ev.early_top_share:.0%} of the first steps, "
            "actions at random late in training (an epsilon schedule inverted)"
        )
    if ev.no_exploration:
        return (
            "no exploration early",
            f"no exploration at the start: one action in {ev.early_top_share:.0%} of the first training steps",
        )
    if late_random:
        return "random late", (
            "still acting at random late in training, though the trained agent acts well: an exploration schedule "
            "that ends at random or runs backwards"
        )
    return None


def witness_rows(algo: str, results: list[Any]) -> list[Any]:
    """Rows 'gradients' and 'acting' from what the witnesses saw on every judged probe."""
    from dirtyrl.doctor.checks import Result
    from dirtyrl.witness.gradients import PRIORITY

    judged = [(r, r.data["witness"]) for r in results if r.algo == algo and "witness" in r.data]
    if not judged:
        return []
    rows = []
    by_check: dict[str, list[tuple[int, Finding]]] = {}
    for r, w in judged:
        for f in w.findings:
            by_check.setdefault(f.check, []).append((r.data["probe"], f))
    probes = ", ".join(str(r.data["probe"]) for r, _ in judged)
    expected = "no carried-over, zero, NaN or exploding gradients; every stepped parameter in an optimizer"
    if by_check:
        order = sorted(by_check, key=lambda c: PRIORITY.index(c) if c in PRIORITY else len(PRIORITY))
        first = by_check[order[0]][0][1]
        seen = "; ".join(f"{c} (probe {', '.join(sorted({str(n) for n, _ in by_check[c]}))})" for c in order)
        carried = max(w.carried_share for _, w in judged)
        share = f"; carried over in {carried:.0%} of updates" if carried else ""
        measured = f"{seen}{share}; first: {first.where}: {first.detail}"
        cause = f"{first.cause} ({first.check} on {first.where})"
        rows.append(Result(algo, "gradients", False, measured, expected, cause, data={"cause": cause}))
    else:
        rows.append(Result(algo, "gradients", True, f"no finding on probes {probes}", expected, ""))
    problems = [(r.data["probe"], p) for r, w in judged if (p := _acting_problem(r, w)) is not None]
    expected = "actions on the current observation, sampled, exploring early"
    if problems:
        # The most specific problem names the cause: "exploration backwards" on one probe explains
        # "no exploration early" on another.
        cause = min(problems, key=lambda item: ACTING_ORDER.index(item[1][0].split(" (")[0]))[1][1]
        measured = "; ".join(f"probe {n}: {label}" for n, (label, _) in problems)
        rows.append(Result(algo, "acting", False, measured, expected, cause, data={"cause": cause}))
    else:
        checked = [r.data["probe"] for r, w in judged if w.evidence is not None and w.evidence.steps]
        rows.append(Result(algo, "acting", True, f"env record of probes {checked}: as expected", expected, ""))
    return rows
