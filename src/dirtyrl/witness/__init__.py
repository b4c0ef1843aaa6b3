"""Witnesses: global hooks on outside code, so that what it *does* can be judged, not what it reports.

- ``envs.py``: ``EnvWitness`` records every env made through ``gymnasium.make`` (episodes,
  actions, observations); ``acting.py`` reads that record (which observation the actions follow,
  exploration, samples of the policy or not).
- ``gradients.py``: ``GradientWitness`` hooks every module, parameter and optimizer (carried-over
  gradients measured exactly, parameters in no optimizer, zero / NaN / exploding gradients, dead
  units, parameters that never change, a network input that never varies).

``doctor --agent`` runs the agent's ``make_agent`` under both; ``watch`` runs a whole script under
them. They import nothing from the algorithms.
"""

from dirtyrl.witness.envs import EnvWitness
from dirtyrl.witness.findings import Finding, WitnessTripped, format_findings
from dirtyrl.witness.gradients import GradientWitness

__all__ = ["EnvWitness", "Finding", "GradientWitness", "WitnessTripped", "format_findings"]
