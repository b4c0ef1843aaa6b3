"""``dirtyrl watch SCRIPT [args...]``: the seed's instruments on any PyTorch RL script, unchanged.

Like ``python -m cProfile script.py``: the script runs in this process (``runpy``, as
``__main__``, with its own ``sys.argv`` and its folder first on ``sys.path``), and nothing in it
changes. Before its first line runs two witnesses are installed (dirtyrl/witness/):

- the env witness records every env it makes through ``gymnasium.make`` or ``make_vec`` (and
  ``SyncVectorEnv`` of ``gym.make`` thunks): episode returns and lengths to
  TensorBoard under the tags ``train`` uses, the action histogram and its entropy per window of
  env steps, observation checks, an agent that plays one action almost always;
- the gradient witness hooks every module, parameter and optimizer: gradients never cleared,
  NaN, layers left out of the optimizer, dead ReLUs, a constant network input, all-zero or
  exploding gradients, steps too large for the weights; gradient norms and histograms every
  ``--every`` optimizer steps.

Findings print as they happen (``--trap warn``) or stop the script at the first one
(``--trap stop``: one line, exit 3). At the end, whatever happened (a normal end, ``sys.exit``,
an exception, Ctrl-C, a trap): one table of findings, a random-policy baseline on the script's
first env (with its kwargs) in ``RUN_DIR/baseline-random``, ``summary.json``, the report page,
and, where the observations are images, a contact sheet of what the network was fed. The exit
status is the script's own (3 for a trap).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import math
import os
import runpy
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dirtyrl.errors import UserError

DEFAULT_EVERY = 100  # optimizer steps between gradient norms (benchmarks/RESULTS.md: the cost on CartPole DQN)
DEFAULT_HISTOGRAM_EVERY = 1000  # ... and between histograms, which cost ~0.5 ms each
DEFAULT_CHECK_EVERY = 50  # full gradient checks: the first 100 optimizer steps, then every 50th
OBS_CHECK_EVERY = 4  # small observations (<= 1024 entries) checked every 4th step (large: every 16th)
DEFAULT_WINDOW = 1000  # env steps per point of the action histogram and entropy
KEEP_INPUTS = 16  # network inputs kept for the contact sheet, one every INPUT_EVERY calls
INPUT_EVERY = 200
TRAP_STATUS = 3  # as `train --debug.trap stop`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trap",
        default="warn",
        choices=["warn", "stop"],
        help="warn: one line per new finding, the script goes on; stop: the first finding stops it (exit 3) (default: warn)",
    )
    parser.add_argument("--run-dir", default=None, help="where everything goes (default: runs/watch-<script>-<timestamp>)")
    parser.add_argument(
        "--every",
        type=int,
        default=DEFAULT_EVERY,
        help=f"log gradient norms every N optimizer steps; 0: off, histograms too (default: {DEFAULT_EVERY})",
    )
    parser.add_argument(
        "--histogram-every",
        type=int,
        default=DEFAULT_HISTOGRAM_EVERY,
        help="log weight and gradient histograms every N optimizer steps, a multiple of --every "
        f"(default: {DEFAULT_HISTOGRAM_EVERY})",
    )
    parser.add_argument(
        "--check-every",
        type=int,
        default=DEFAULT_CHECK_EVERY,
        help="check gradients, weights and dead units in full on each of the first 100 optimizer steps, then on every "
        f"Nth; 1: every step, slower (default: {DEFAULT_CHECK_EVERY})",
    )
    parser.add_argument(
        "--render", action="store_true", help="show the first env the script steps; toggle with 'r' or RUN_DIR/RENDER"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        help=f"env steps per point of the action histogram and its entropy (default: {DEFAULT_WINDOW})",
    )
    parser.add_argument(
        "--baseline-episodes",
        type=int,
        default=20,
        help="episodes of the random-policy baseline played after the script; 0: none (default: 20)",
    )
    parser.add_argument("--baseline-steps", type=int, default=5000, help="... and at most this many env steps (default: 5000)")
    parser.add_argument("--ema", type=float, default=0.99, help="EMA factor of charts/return_ema, as train's (default: 0.99)")
    parser.add_argument(
        "--target-return", type=float, default=None, help="solved threshold (default: the env spec's reward_threshold)"
    )
    parser.add_argument("script", help="a Python script, run unchanged as __main__")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="...", help="the script's own arguments")


# -- pure helpers -------------------------------------------------------------------------------


def counts_entropy(counts: dict[int, int]) -> float:
    """Entropy (nats) of an action histogram: log A for uniform actions, 0 for one action.

    >>> round(counts_entropy({0: 50, 1: 50}), 4), counts_entropy({1: 7}), counts_entropy({})
    (0.6931, 0.0, 0.0)
    """
    total = sum(counts.values())
    return max(0.0, -sum(c / total * math.log(c / total) for c in counts.values() if c)) if total else 0.0  # no -0.0


def exit_status(code: Any) -> int:
    """The process status Python gives ``sys.exit(code)``: None 0, an int itself, anything else 1.

    >>> [exit_status(c) for c in (None, 0, 4, True, "bad input")]
    [0, 0, 4, 1, 1]
    """
    if code is None:
        return 0
    return int(code) if isinstance(code, int) else 1


def env_kwargs_items(kwargs: dict[str, Any]) -> list[str] | None:
    """``gym.make`` kwargs as the ``key=value`` items ``--env-kwargs`` reads back; None if one is
    not a Python literal (an object can't be written into config.json or made again).

    >>> env_kwargs_items({"is_slippery": False, "map_name": "8x8"})
    ['is_slippery=False', "map_name='8x8'"]
    >>> env_kwargs_items({"wrapper": object()}) is None
    True
    """
    items = []
    for key, value in kwargs.items():
        try:
            same = ast.literal_eval(repr(value)) == value
        except (ValueError, SyntaxError):
            same = False
        if not same:
            return None
        items.append(f"{key}={value!r}")
    return items


def image_space(space: Any) -> bool:
    """A uint8 Box of 2 or 3 dimensions: a screen (HxW, HxWxC or CxHxW)."""
    import gymnasium as gym

    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3)


def input_tile(x: np.ndarray, label: str) -> np.ndarray:
    """One network input as an (H, W, 3) uint8 picture: RGB as is, other channels (a frame
    stack) side by side, left to right; scaled to 0..255 from its own range; labelled on top."""
    from PIL import Image, ImageDraw

    a = np.asarray(x, np.float64)
    if a.ndim == 3 and a.shape[-1] in (1, 3) and a.shape[0] not in (1, 3):
        a = a.transpose(2, 0, 1)  # HWC -> CHW
    a = a[None] if a.ndim == 2 else a
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo >= 0 and hi <= 1:
        hi, lo = 1.0, 0.0  # already 0..1: keep its own brightness
    elif lo >= 0 and hi <= 255:
        hi, lo = 255.0, 0.0
    a = np.nan_to_num((a - lo) / max(hi - lo, 1e-12) * 255, nan=0).clip(0, 255).astype(np.uint8)
    if a.shape[0] == 3:
        panel = a.transpose(1, 2, 0)
    else:
        gap = np.full((a.shape[1], 2), 64, np.uint8)
        panel = np.concatenate([p for c in a for p in (c, gap)][:-1], axis=1)
        panel = np.repeat(panel[..., None], 3, axis=2)
    scale = max(1, 160 // max(panel.shape[0], 1))
    image = Image.fromarray(np.ascontiguousarray(panel)).resize(
        (panel.shape[1] * scale, panel.shape[0] * scale), Image.NEAREST
    )
    canvas = Image.new("RGB", (image.width, image.height + 16), (24, 24, 24))
    canvas.paste(image, (0, 16))
    ImageDraw.Draw(canvas).text((2, 2), label, fill=(230, 230, 230))
    return np.asarray(canvas)


def print_script_traceback(exc: BaseException, script: Path) -> None:
    """The traceback as ``python SCRIPT`` prints it: from the script's first frame, not watch's."""
    target = os.path.realpath(script)
    tb = exc.__traceback__
    while tb is not None and os.path.realpath(tb.tb_frame.f_code.co_filename) != target:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__, file=sys.stderr)


def tripped_in(exc: BaseException) -> BaseException | None:
    """The ``WitnessTripped`` that ``exc`` is, or was raised from (a script may wrap it)."""
    from dirtyrl.witness import WitnessTripped

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, WitnessTripped):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def run_script(script: Path, argv: list[str]) -> None:
    """``python SCRIPT ARGV`` in this process: as ``__main__``, its folder first on sys.path."""
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *argv]
    sys.path.insert(0, os.path.dirname(os.path.realpath(script)))
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def script_outcome(exc: BaseException | None, script: Path) -> int:
    """Watch's exit status from how the script ended, after telling the user what Python would."""
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)  # sys.exit("message"), as Python prints it
        return exit_status(exc.code)
    tripped = tripped_in(exc)
    if tripped is not None:
        print(f"dirtyrl: trap: {tripped}", file=sys.stderr)
        return TRAP_STATUS
    print_script_traceback(exc, script)
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def check_run_dir(run_dir: str | None, script: Path) -> Path:
    """The run directory, created; one that already holds a run (summary.json or tb/) is refused."""
    from dirtyrl.telemetry import make_run_dir

    if run_dir is not None and any((Path(run_dir) / name).exists() for name in ("summary.json", "tb")):
        raise UserError(f"run dir {run_dir} already holds a run; pick another --run-dir")
    path = make_run_dir("watch", script.stem, run_dir)
    with contextlib.suppress(OSError):
        (path / "checkpoints").rmdir()  # made by make_run_dir for the algorithms; watch writes none
    return path


# -- the watched run ----------------------------------------------------------------------------


class Watch:
    """The witnesses and what they feed: episode stats, TensorBoard, the renderer."""

    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        from dirtyrl.telemetry import RunLogger
        from dirtyrl.witness import EnvWitness, GradientWitness

        self.args = args
        self.run_dir = run_dir
        self.logger = RunLogger(run_dir)
        self.stats: Any = None  # telemetry.EpisodeStats, made at the first episode (its env gives the threshold)
        self.start = time.monotonic()
        self.renderer: Any = None
        self.render_env: Any = None
        if args.render:
            from dirtyrl.debug.render import Renderer

            self.renderer = Renderer(run_dir, True)
        self.envs = EnvWitness(
            on_episode=self.on_episode,
            on_finding=self.on_env_finding,
            window=args.window,
            on_window=self.on_window,
            on_env_step=self.on_env_step if self.renderer is not None else None,
            obs_check_every=OBS_CHECK_EVERY,
        )
        self.grads = GradientWitness(
            args.trap,
            every=args.every,
            logger=self.logger,
            env_step=lambda: self.envs.env_steps,
            on_finding=self.log_finding,
            keep_inputs=KEEP_INPUTS,
            input_every=INPUT_EVERY,
            check_every=args.check_every,
            histogram_every=args.histogram_every,
        )

    # -- witness callbacks ----------------------------------------------------------------------
    def on_episode(self, recorder: Any, episode: Any, env_step: int) -> None:
        from dirtyrl.telemetry import EpisodeStats

        if self.stats is None:
            spec_threshold = getattr(recorder.spec, "reward_threshold", None) if recorder.spec is not None else None
            threshold = self.args.target_return if self.args.target_return is not None else spec_threshold
            self.stats = EpisodeStats(self.args.ema, threshold)
        self.stats.add(episode.ret, episode.length, env_step, time.monotonic() - self.start)
        self.logger.scalar("charts/episode_return", episode.ret, env_step)
        self.logger.scalar("charts/episode_length", episode.length, env_step)
        self.logger.scalar("charts/return_ema", self.stats.ema, env_step)
        if self.renderer is not None and recorder is self.render_env:
            self.renderer.on_episode_end(self.stats.episodes)

    def on_window(self, counts: Counter, env_step: int) -> None:
        actions = np.repeat(np.fromiter(counts.keys(), np.int64), np.fromiter(counts.values(), np.int64))
        self.logger.histogram("policy/actions", actions, env_step)
        self.logger.scalar("policy/action_entropy", counts_entropy(counts), env_step)
        self.logger.scalar("charts/sps", env_step / max(time.monotonic() - self.start, 1e-9), env_step)

    def on_env_step(self, recorder: Any, env_step: int) -> None:
        if self.render_env is None:
            self.render_env = recorder  # the first env the script steps is the one shown
        if recorder is self.render_env:
            self.renderer.on_env_step(recorder, env_step)

    def log_finding(self, finding: Any) -> None:
        self.logger.text("debug/witness", f"{finding}; likely cause: {finding.cause}", finding.env_step)

    def on_env_finding(self, finding: Any) -> None:
        """The env witness's findings follow --trap as the gradient witness's do."""
        from dirtyrl.witness import WitnessTripped

        self.log_finding(finding)
        if self.args.trap == "stop":
            raise WitnessTripped(finding)
        print(f"dirtyrl: witness: {finding}", file=sys.stderr, flush=True)

    # -- running --------------------------------------------------------------------------------
    def run(self) -> int:
        script = Path(self.args.script)
        print(
            f"dirtyrl: watching {script} (--trap {self.args.trap}, gradient stats every {self.args.every} optimizer steps); "
            f"run dir {self.run_dir}",
            flush=True,
        )
        self.envs.install()
        self.grads.install()
        self.start = time.monotonic()
        caught: BaseException | None = None
        try:
            run_script(script, list(self.args.args))
        except BaseException as exc:  # the script's own ending, whatever it is: reported below
            caught = exc
        finally:
            wall = time.monotonic() - self.start
            self.envs.remove()
            findings = self.grads.close()  # removes the hooks, then the end-of-run checks
            if self.renderer is not None:
                self.renderer.close()
        status = script_outcome(caught, script)
        self.finish(status, wall, findings)
        return status

    def finish(self, status: int, wall: float, grad_findings: list[Any]) -> None:
        """Everything after the script: the table, the baseline, summary.json, the report."""
        from dirtyrl.telemetry import write_json_atomic
        from dirtyrl.witness import format_findings

        findings = sorted(self.envs.findings + grad_findings, key=lambda f: (f.env_step, f.optimizer_step))
        print("\ndirtyrl watch: findings\n" + format_findings(findings), flush=True)
        sheet = self.write_input_sheet()
        self.logger.close()
        env_id, items = self.first_env()
        baseline, why = self.random_baseline(env_id, items)
        summary = self.summary(env_id, status, wall, findings, baseline)
        write_json_atomic(self.run_dir / "config.json", self.config(env_id, items))
        write_json_atomic(self.run_dir / "summary.json", summary)
        report = self.write_report()
        self.announce(summary, baseline, why, sheet, report)

    def first_env(self) -> tuple[str | None, list[str] | None]:
        """The first env the script made, and its kwargs as ``key=value`` items (None: not literals)."""
        if not self.envs.made:
            return None, []
        env_id, kwargs = self.envs.made[0]
        return env_id, env_kwargs_items({k: v for k, v in kwargs.items() if k != "render_mode"})

    def random_baseline(self, env_id: str | None, items: list[str] | None) -> tuple[dict[str, Any] | None, str]:
        """The random policy on the script's first env, its kwargs included, in RUN_DIR/baseline-random."""
        if self.args.baseline_episodes == 0:
            return None, "skipped (--baseline-episodes 0)"
        if env_id is None:
            return None, "skipped: the script made no env through gymnasium.make"
        if items is None:
            return None, f"skipped: {env_id} was made with a keyword argument that is not a Python literal"
        from dirtyrl.algos import random_policy
        from dirtyrl.config import EnvConfig, RunConfig

        out = self.run_dir / "baseline-random"
        cfg = random_policy.Config(
            env=EnvConfig(env=env_id, env_kwargs=items),
            run=RunConfig(
                total_episodes=self.args.baseline_episodes,
                total_steps=self.args.baseline_steps or None,
                run_dir=str(out),
                progress="off",
            ),
        )
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                random_policy.train(cfg)
        except UserError as exc:  # an env dirty-rl's random policy cannot play (continuous actions, ...)
            return None, f"skipped: {exc}"
        done = json.loads((out / "summary.json").read_text())
        return {"mean_return": done["mean_return_last_20"], "episodes": done["episodes"], "run_dir": str(out)}, ""

    def summary(
        self, env_id: str | None, status: int, wall: float, findings: list[Any], baseline: dict[str, Any] | None
    ) -> dict[str, Any]:
        from dirtyrl.telemetry import EpisodeStats, summary_dict

        stats = self.stats or EpisodeStats(self.args.ema, self.args.target_return)
        out = summary_dict("watch", env_id, None, self.envs.env_steps, wall, stats)
        out.update(
            script=str(self.args.script),
            argv=list(self.args.args),
            exit_status=status,
            findings=[f.to_dict() for f in findings],
            random_baseline=baseline["mean_return"] if baseline else None,
            random_baseline_episodes=baseline["episodes"] if baseline else 0,
            action_entropy=self.envs.action_entropy(),
            optimizer_steps=self.grads.steps,
        )
        return out

    def config(self, env_id: str | None, items: list[str] | None) -> dict[str, Any]:
        """What ``dirtyrl report`` reads (the env, to play a baseline; the EMA factor), and watch's flags."""
        flags = {k: v for k, v in vars(self.args).items() if k not in ("command", "args", "script")}
        return {
            "algo": "watch",
            "script": str(self.args.script),
            "argv": list(self.args.args),
            "watch": flags,
            "env": {"env": env_id, "env_kwargs": items or []},
            "run": {"ema": self.args.ema, "seed": 1},
        }

    def write_input_sheet(self) -> Path | None:
        """What the network was fed, where the script's envs give images: RUN_DIR/inspect/agent_input.png."""
        if not self.grads.inputs or not any(image_space(r.observation_space) for r in self.envs.recorders):
            return None
        from PIL import Image

        from dirtyrl.debug.inspect import contact_sheet

        name = self.grads.inputs[0][0]
        tiles = [input_tile(x.float().numpy(), f"{name} input, env step {step}") for _, step, x in self.grads.inputs]
        sheet = contact_sheet(tiles, columns=min(4, len(tiles)))
        path = self.run_dir / "inspect" / "agent_input.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sheet).save(path)
        self.logger.image("debug/agent_input", sheet, self.envs.env_steps)
        return path

    def write_report(self) -> Path | None:
        from dirtyrl.commands.report import write_report

        try:
            return write_report(self.run_dir)
        except Exception as exc:  # the page is a convenience: the run's results are written already
            print(f"dirtyrl: report not written ({type(exc).__name__}: {exc})", file=sys.stderr)
            return None

    def announce(
        self, summary: dict[str, Any], baseline: dict[str, Any] | None, why: str, sheet: Path | None, report: Path | None
    ) -> None:
        from dirtyrl.telemetry import ending_line

        counts = f"{summary['env_steps']} env steps, {summary['episodes']} episodes"
        print(f"{counts}, {summary['optimizer_steps']} optimizer steps")
        if summary["episodes"]:
            print(ending_line(summary))
        if baseline is not None:
            mine = summary["mean_return_last_20"]
            verdict = ""
            if mine is not None:
                above = "above" if mine > baseline["mean_return"] else "NOT above"
                verdict = f"; the script's last 20: {mine:.2f} ({above} random)"
            print(f"random policy: mean return {baseline['mean_return']:.2f} over {baseline['episodes']} episodes{verdict}")
        else:
            print(f"random policy: {why}")
        lines = [
            f"run dir:      {self.run_dir}",
            f"tensorboard:  tensorboard --logdir {self.run_dir / 'tb'}",
            f"summary:      {self.run_dir / 'summary.json'}",
        ]
        if report is not None:
            lines.append(f"report:       {report}")
        if baseline is not None:
            lines.append(f"baseline:     {baseline['run_dir']}")
        if sheet is not None:
            lines.append(f"agent input:  {sheet}")
        if self.renderer is not None and self.renderer.written:
            lines.append(f"videos:       {self.run_dir / 'videos'}")
        print("\n".join(lines), flush=True)


def run(args: argparse.Namespace) -> int:
    script = Path(args.script)
    if not script.is_file():
        raise UserError(f"no script {script}: watch runs a Python file (dirtyrl watch [flags] SCRIPT [script args])")
    for name in ("every", "baseline_episodes", "baseline_steps"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.every and args.histogram_every % args.every:
        raise UserError(f"--histogram-every must be a multiple of --every ({args.every}), got {args.histogram_every}")
    for name in ("window", "check_every", "histogram_every"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0.0 <= args.ema < 1.0:
        raise UserError(f"--ema must be in [0, 1), got {args.ema}")
    run_dir = check_run_dir(args.run_dir, script)
    return Watch(args, run_dir).run()
