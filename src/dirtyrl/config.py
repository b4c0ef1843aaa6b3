"""Configuration dataclasses and the argparse generator built from them.

Every field carries its help text in ``metadata["help"]`` so that ``--help`` names every
knob. This module imports neither numpy nor torch: the CLI parses ``--threads`` before those
load (OMP_NUM_THREADS must be set before the first numpy import).

Flags are flat (``--env``, ``--lr``) except for the ``debug`` group, which is prefixed
(``--debug.trap``). A field whose default is ``None`` and whose help says "per-env default"
is filled in by the algorithm's ``resolve()`` from the env preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from dirtyrl.errors import UserError


def arg(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with its ``--help`` text (``choices=`` and ``nargs=`` pass through)."""
    meta = {"help": help, **kw}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class EnvConfig:
    env: str = arg(
        "CartPole-v1",
        "Gymnasium id with a discrete action space, the preset 'pong', or module:EnvId for your own env "
        "(the module is imported first and registers EnvId; see docs/environments.md)",
    )
    env_kwargs: list[str] = arg(
        [],
        "keyword arguments for gym.make, as key=value (values are Python literals, else text), "
        "e.g. --env-kwargs is_slippery=False map_name=8x8",
        nargs="*",
        metavar="KEY=VALUE",
    )
    actions: int = arg(3, "Pong action set: 2 (up, down), 3 (no-op, up, down) or 6 (ALE minimal set)", choices=[2, 3, 6])
    sticky: float = arg(
        0.25, "sticky-action probability of pong and ALE/<Game>-v5 (ALE v5 default 0.25; 0 for a deterministic game)"
    )


@dataclass
class RunConfig:
    seed: int = arg(
        1,
        "random seed; every episode is seeded from (seed, global episode index), so runs are "
        "reproducible and independent of the worker count",
    )
    total_steps: int | None = arg(None, "stop after this many env steps (summed over workers)")
    total_episodes: int | None = arg(None, "stop after this many episodes (summed over workers)")
    long_episode_warning: int = arg(
        10_000,
        "warn once when an episode lasts this many steps (an Atari agent may be waiting for FIRE); "
        "such an episode still running after --total-steps is cut there; 0: off",
    )
    stop_when_solved: bool = arg(False, "stop when the mean return of the last 20 episodes reaches the threshold")
    target_return: float | None = arg(None, "solved threshold; default: the env spec's reward_threshold")
    run_dir: str | None = arg(None, "run directory (default runs/<algo>-<env>-<timestamp>)")
    resume: str | None = arg(None, "checkpoint file to continue from (the run keeps writing to its run dir)")
    device: str = arg("auto", "auto picks cuda when available, else cpu", choices=["auto", "cpu", "cuda"])
    threads: int | None = arg(
        None,
        "torch/OpenMP threads per process, set before numpy and torch load (default: "
        "the cores divided by the local worker processes; 1 for one process)",
    )
    checkpoint_every: int = arg(50, "write a checkpoint every N updates (and always at the end)")
    ema: float = arg(0.99, "smoothing factor of the exponential moving average of returns (the seed's 0.99)")
    progress: str = arg(
        "auto",
        "console progress: auto (a live line on a terminal, periodic lines otherwise), on, off",
        choices=["auto", "on", "off"],
    )

    def finished(self, env_steps: int, episodes: int, solved: bool) -> bool:
        """Whether a stop condition holds (checked by the algorithms between updates/episodes)."""
        return (
            (self.total_steps is not None and env_steps >= self.total_steps)
            or (self.total_episodes is not None and episodes >= self.total_episodes)
            or (self.stop_when_solved and solved)
        )


@dataclass
class DebugConfig:
    inspect_every: int = arg(0, "write every Nth preprocessed input frame (raw | processed | diff) to inspect/ and TB")
    render: bool = arg(False, "show the game while training (window if a display exists, else videos/)")
    video_every: int = arg(0, "record every Nth episode to videos/ (0: never)")
    grad_stats_every: int = arg(0, "every N updates log weight/grad histograms, norms and update ratios (0: off)")
    hooks: list[str] = arg([], "module names whose activations and activation gradients are logged", nargs="*")
    trap: str = arg(
        "off",
        "anomaly traps after every backward: off, warn, stop (dump and exit) or break (pdb)",
        choices=["off", "warn", "stop", "break"],
    )
    trap_grad_norm: float = arg(1e3, "trap when the global gradient norm exceeds this")
    trap_min_entropy: float = arg(0.01, "trap when policy entropy falls below this before --debug.trap-entropy-until")
    trap_entropy_until: int = arg(100, "entropy collapse counts as 'too early' before this many updates")
    trap_dead_fraction: float = arg(0.99, "trap when a ReLU layer has more than this fraction of dead units")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return tp, False


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _number(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def add_dataclass_args(parser: argparse._ActionsContainer, cls: type, prefix: str = "") -> None:
    """Add one ``--flag`` per field of ``cls``; nested dataclass fields become groups.

    A nested field named ``debug`` is prefixed (``--debug.trap``); other nested groups are flat.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            group = parser.add_argument_group(f"{f.name} options")
            add_dataclass_args(group, tp, prefix + ("debug." if f.name == "debug" else ""))
            continue
        flag = "--" + prefix + f.name.replace("_", "-")
        dest = prefix.replace(".", "__") + f.name
        meta = dict(f.metadata)
        help_text = meta.pop("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text += f" (default: {default})" if default is not None or not optional else ""
        kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": help_text, **meta}
        if tp is bool:
            kw.update(nargs="?", const=True, type=_parse_bool, metavar="BOOL")
        elif typing.get_origin(tp) is list:
            kw.update(type=typing.get_args(tp)[0])
        elif tp in (int, float):
            kw.update(type=_number(tp))
        parser.add_argument(flag, **kw)


def build_config(cls: type, values: dict[str, Any], base: Any = None, prefix: str = "") -> Any:
    """Instantiate ``cls`` from argparse's namespace dict, holding only the flags that were given.

    Fields not given keep their value in ``base`` (e.g. the config stored in a checkpoint being
    resumed), else the dataclass default.
    """
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints[f.name])
        inner = getattr(base, f.name) if base is not None else None
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = build_config(tp, values, inner, prefix + ("debug__" if f.name == "debug" else ""))
        elif prefix + f.name in values:
            kwargs[f.name] = values[prefix + f.name]
        elif base is not None:
            kwargs[f.name] = inner
    return cls(**kwargs)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config from ``dataclasses.asdict`` output, e.g. from a checkpoint."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        kwargs[f.name] = config_from_dict(tp, data[f.name]) if dataclasses.is_dataclass(tp) else data[f.name]
    return cls(**kwargs)


def check_positive(**values: float | int | None) -> None:
    """Raise a one-line UserError for the first value that is not > 0 (None is allowed)."""
    for name, value in values.items():
        if value is not None and not value > 0:
            raise UserError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def check_run_config(run: RunConfig) -> None:
    check_positive(
        total_steps=run.total_steps,
        total_episodes=run.total_episodes,
        threads=run.threads,
        checkpoint_every=run.checkpoint_every,
    )
    if run.long_episode_warning < 0:
        raise UserError(f"--long-episode-warning must be >= 0 (0 turns it off), got {run.long_episode_warning}")
    if not 0.0 <= run.ema < 1.0:
        raise UserError(f"--ema must be in [0, 1), got {run.ema}")
