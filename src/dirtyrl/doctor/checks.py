"""One check's verdict (``Result``) and the doctor's table, whose format scripts read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What a failure of each probe points at, before the signatures narrow it down.
PART = {
    1: "value fitting: the loss, the optimiser or the learning rate (V should reach 1)",
    2: "the observation does not reach the value: input wiring, shapes, broadcasting",
    3: "discounting / bootstrapping: gamma, next-state value, done masking",
    4: "policy gradient / action values: loss sign, log-prob or Q of the action taken, action indexing",
    5: "observation-and-action credit: obs, action and reward misaligned in the batch",
    6: "acting on the current observation: obs = next_obs, the observation stored or acted on",
    7: "credit assignment in time: rewards-to-go, or reward/action stored one step off",
    8: "truncation vs termination: a time-limit cut must keep bootstrapping (mask with terminated only)",
    9: "frame history: stacks must be zero-padded before the episode's first frame, oldest first",
    10: "credit assignment in time: rewards-to-go must sum each step's own and later rewards (backwards from the end)",
}


@dataclass
class Result:
    algo: str
    check: str
    passed: bool
    measured: str
    expected: str
    suspect: str  # the likely broken part, shown when the check fails
    seconds: float = 0.0
    # What the check measured, as numbers, for the signatures (doctor/signatures.py); not shown.
    data: dict[str, Any] = field(default_factory=dict)


def format_table(results: list[Result]) -> str:
    """Columns algo, check, result, time, measured, expected, likely broken part; a summary line."""
    rows = [("algo", "check", "result", "time", "measured", "expected", "likely broken part")]
    for r in results:
        verdict = "pass" if r.passed else "FAIL"
        rows.append((r.algo, r.check, verdict, f"{r.seconds:.1f}s", r.measured, r.expected, "" if r.passed else r.suspect))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:6], widths, strict=True)) + "  " + row[6] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    failed = sum(not r.passed for r in results)
    lines.append(f"\n{len(results) - failed} passed, {failed} failed")
    return "\n".join(line.rstrip() for line in lines)
