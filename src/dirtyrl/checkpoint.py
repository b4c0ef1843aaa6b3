"""Checkpoints: one dict per file, written atomically, checked before anything is restored.

A checkpoint holds the model, optimizer, counters, the resolved config and every RNG state
the run draws from, so that a resumed run continues bit for bit (on CPU). Writing goes to a
temporary file that is renamed into place: an interrupted save never leaves a corrupt
``latest.pt``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dirtyrl.errors import UserError

FORMAT_VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, algo: str | None = None, env: str | None = None) -> dict[str, Any]:
    """Load and validate; every problem is a one-line UserError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (look in RUN_DIR/checkpoints/latest.pt)")
    try:
        # weights_only=False: the dict carries numpy RNG states and plain config dicts we wrote ourselves.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(f"checkpoint {path} is corrupt or not a dirty-rl checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise UserError(f"checkpoint {path} is not a dirty-rl checkpoint (format {FORMAT_VERSION} expected)")
    if algo is not None and state.get("algo") != algo:
        raise UserError(
            f"checkpoint {path} is from '{state.get('algo')}', not '{algo}': "
            f"resume it with 'dirtyrl train {state.get('algo')}'"
        )
    if env is not None and state.get("env") != env:
        raise UserError(f"checkpoint {path} was trained on '{state.get('env')}', not '{env}': pass --env {state.get('env')}")
    return state


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict`` with a one-line UserError naming the first mismatched tensor."""
    own = model.state_dict()
    for key in sorted(set(own) | set(state)):
        if key not in state or key not in own:
            where = "missing from the checkpoint" if key not in state else "not in this network"
            raise UserError(
                f"checkpoint {path} does not match this network: {key} is {where}; resume with the flags it was trained with"
            )
        if own[key].shape != state[key].shape:
            raise UserError(
                f"checkpoint {path} does not match this network: {key} is {tuple(state[key].shape)} "
                f"there and {tuple(own[key].shape)} here; resume with the flags it was trained with"
            )
    model.load_state_dict(state)


def global_rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_global_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_torch_threads(threads: int | None) -> None:
    """``--threads`` when given; else keep OMP_NUM_THREADS, which the CLI set before torch loaded."""
    if threads is not None:
        torch.set_num_threads(threads)


def pick_device(name: str) -> torch.device:
    """Resolve ``auto|cpu|cuda`` once; asking for cuda without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return torch.device(name)
