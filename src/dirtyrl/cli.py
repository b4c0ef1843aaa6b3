"""The one entry point: ``dirtyrl train|play|inspect|graph|doctor|report|watch``.

Thread counts are read from argv and exported *before* numpy or torch is imported (OpenMP
reads OMP_NUM_THREADS once, at load time), which is why the heavy imports below are local.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import traceback

from dirtyrl.config import add_dataclass_args, build_config, config_from_dict
from dirtyrl.errors import UserError, user_code_line, user_frame

ALGOS = {"vpg": "dirtyrl.algos.vpg", "dqn": "dirtyrl.algos.dqn", "random": "dirtyrl.algos.random_policy"}
# Tool commands: each module has ``add_arguments(parser)`` and ``run(args) -> int``.
TOOLS = {
    "play": ("dirtyrl.commands.play", "watch a trained agent play (window or video file)"),
    "inspect": ("dirtyrl.debug.inspect", "write a contact sheet of raw | processed | difference frames"),
    "graph": ("dirtyrl.commands.graph", "render the backward graph of the loss and list unreachable parameters"),
    "doctor": ("dirtyrl.doctor", "run the probe environments against the real algorithms"),
    "report": ("dirtyrl.commands.report", "one PNG page of a run's curves, beside the random baseline"),
    "watch": ("dirtyrl.commands.watch", "run your own RL script unchanged under the witnesses: findings, TensorBoard, report"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong and where to look), exit 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, token in enumerate(argv):
        if token == flag and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    return None


def set_threads(argv: list[str]) -> None:
    """OMP/MKL threads per process: --threads, else cores divided among the local workers."""
    threads = _flag_value(argv, "--threads")
    workers = _flag_value(argv, "--workers")
    if threads is None or not threads.isdigit() or int(threads) < 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", workers if workers and workers.isdigit() else "1") or 1)
        threads = str(max(1, (os.cpu_count() or 1) // max(local, 1))) if local > 1 else "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)


def _load_algo(name: str):
    return importlib.import_module(ALGOS[name])


def build_parser(argv: list[str]) -> OneLineParser:
    parser = OneLineParser(prog="dirtyrl", description="Reinforcement learning you can look inside.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    train = commands.add_parser("train", help="train an agent (vpg, dqn, random)")
    algos = train.add_subparsers(dest="algo", required=True, parser_class=OneLineParser)
    # Only the algorithm named on the command line is imported (each pulls in torch).
    wanted = [a for a in ALGOS if a in argv[1:3]] or list(ALGOS)
    for name in ALGOS:
        sub = algos.add_parser(name, help=f"train {name}")
        if name in wanted:
            add_dataclass_args(sub, _load_algo(name).Config)
    for name, (module, help_text) in TOOLS.items():
        sub = commands.add_parser(name, help=help_text)
        if name in argv[:1]:
            importlib.import_module(module).add_arguments(sub)
    return parser


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    from dirtyrl import distributed  # imports torch: only after set_threads

    algo = _load_algo(args.algo)
    values = {k: v for k, v in vars(args).items() if k not in ("command", "algo")}
    # --resume auto, and a worker group restarted by torchrun, continue from RUN_DIR's latest.pt.
    values["resume"] = distributed.resume_path(values.get("resume"), values.get("run_dir"))
    base = None
    if values.get("resume"):
        from dirtyrl.checkpoint import load_checkpoint

        # Resuming continues the checkpoint's own config; flags given now override it.
        state = load_checkpoint(values["resume"], algo.ALGO)
        base = config_from_dict(algo.Config, state["config"])
    cfg = build_config(algo.Config, values, base)
    if args.algo == "vpg":  # the multi-process algorithm
        if distributed.launched():
            # Under torchrun (or as a worker of --workers N) the world size is the launcher's.
            cfg = dataclasses.replace(cfg, workers=distributed.env_world_size())
        elif cfg.workers > 1:
            algo.resolve(cfg)  # a bad worker count is reported once, before any process starts
            return distributed.launch_local(cfg.workers, argv, cfg.run.run_dir)
    try:
        algo.train(cfg)
    except distributed.PeerLostError as exc:
        print(f"dirtyrl: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["watch"]:
        # A watched script keeps the threads it would have under plain `python` (and its own
        # --threads or --workers flags are not dirty-rl's).
        set_threads(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        if args.command == "train":
            return _train(args, argv)
        return importlib.import_module(TOOLS[args.command][0]).run(args)
    except UserError as exc:
        print(f"dirtyrl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # --debug.trap stop: one line naming the check and the dump, exit 3. Imported here
        # because dirtyrl.debug loads torch, which must wait for set_threads.
        from dirtyrl.debug.traps import TrapTripped

        if isinstance(exc, TrapTripped):
            print(f"dirtyrl: trap: {exc}", file=sys.stderr)
            return 3
        # Raised in the user's own code (their env, their agent): say whose function it was,
        # then the whole traceback, which they need. Entirely in library code: a bug, re-raised.
        found = user_frame(exc)
        if found is None:
            raise
        print(f"dirtyrl: error: {user_code_line(found)}", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
