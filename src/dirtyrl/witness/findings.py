"""One finding of a witness, and the table ``watch`` ends with."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    """What the witness saw: a check name (the trap names of ``--debug.trap`` where one fits),
    where (a parameter, a module or an env id), the numbers, the likely cause, and when
    (the optimizer step and the env step, counted by the witnesses)."""

    check: str
    where: str
    detail: str
    cause: str
    optimizer_step: int = 0
    env_step: int = 0

    def __str__(self) -> str:
        return f"{self.check} on {self.where}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class WitnessTripped(RuntimeError):
    """Raised from inside a hook by ``--trap stop``; ``watch`` prints it as one line and exits 3."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(
            f"stopped at optimizer step {finding.optimizer_step} (env step {finding.env_step}): {finding}; "
            f"likely cause: {finding.cause}"
        )


def format_findings(findings: list[Finding]) -> str:
    """One line per finding: what, where, when, the numbers and the likely cause.

    >>> print(format_findings([Finding("zero_grad", "fc.weight", "all zeros", "a detached loss", 3, 40)]))
    check      where      step  env step  measured   likely cause
    -------------------------------------------------------------
    zero_grad  fc.weight  3     40        all zeros  a detached loss
    >>> format_findings([])
    'no findings'
    """
    if not findings:
        return "no findings"
    rows = [("check", "where", "step", "env step", "measured", "likely cause")]
    rows += [(f.check, f.where, str(f.optimizer_step), str(f.env_step), f.detail, f.cause) for f in findings]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)
