"""The env factory: one ``make_env`` used by training, evaluation, inspection and rendering,
so what you inspect is exactly what the agent sees.

``--env`` takes any registered Gymnasium id with a discrete action space, the preset ``pong``
(see ``envs/pong.py`` for the ALE variant and why), a probe env ``dirtyrl/ProbeN-v0``, or
``module:EnvId`` for an env of your own: Gymnasium's ``gym.make("module:EnvId")`` imports
``module`` (which calls ``gym.register``) before it looks the id up, in every process that
makes the env, so a checkpoint that records ``module:EnvId`` finds the env again.
``--env-kwargs key=value ...`` go to ``gym.make``. Every observation goes through one policy
(envs/observations.py); Atari screens through envs/atari_vpg.py (VPG, the random baseline)
or envs/atari_dqn.py (DQN).
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
from typing import Any

import gymnasium as gym

from dirtyrl.envs.atari_vpg import wrap_atari_vpg
from dirtyrl.envs.observations import apply_observation_policy, check_action_space, is_image
from dirtyrl.envs.pong import make_pong
from dirtyrl.envs.probes import register_probes
from dirtyrl.errors import UserError

ALE_ENTRY_POINT = "ale_py.env:AtariEnv"

PONG = "pong"


def is_pong(env_id: str) -> bool:
    return env_id == PONG


def _register_all() -> None:
    register_probes()
    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:  # Atari is optional for the classic-control envs
        pass


def split_module(env_id: str) -> tuple[str | None, str]:
    """``'corridor:Corridor-v0'`` -> ``('corridor', 'Corridor-v0')``; a plain id has no module.

    >>> split_module("corridor:Corridor-v0"), split_module("CartPole-v1")
    (('corridor', 'Corridor-v0'), (None, 'CartPole-v1'))
    """
    module, sep, name = env_id.partition(":")
    return (module, name) if sep else (None, env_id)


def _ids_registered_by(module: str, before: set[str]) -> list[str]:
    """Ids whose entry point lives in ``module`` (or that appeared when it was imported)."""
    found = set(gym.registry) - before
    for env_id, spec in gym.registry.items():
        entry = spec.entry_point
        where = entry.split(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", "")
        if where == module or where.startswith(module + "."):
            found.add(env_id)
    return sorted(found)


def _import_env_module(module: str, env_id: str) -> list[str]:
    """Import ``module`` as gym.make would; returns the ids it registered. One-line UserErrors."""
    before = set(gym.registry)
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise UserError(
                f"--env '{env_id}': cannot import module '{module}' ({exc}); put the folder that holds "
                f"{module.replace('.', '/')}.py on PYTHONPATH, e.g. PYTHONPATH=examples"
            ) from exc
        raise UserError(f"--env '{env_id}': importing module '{module}' failed: {exc}") from exc
    except Exception as exc:  # the user's own module is broken: say where, in one line
        raise UserError(f"--env '{env_id}': importing module '{module}' failed: {type(exc).__name__}: {exc}") from exc
    return _ids_registered_by(module, before)


def check_env_id(env_id: str) -> None:
    """A one-line UserError for an id that is not registered, with the closest matches.

    ``module:EnvId`` imports ``module`` first (Gymnasium's own convention); a module that
    cannot be imported, or registers no such id, is named with the ids it did register.
    """
    if is_pong(env_id):
        return
    _register_all()
    module, name = split_module(env_id)
    if module is not None:
        registered = _import_env_module(module, env_id)
        if name in gym.registry:
            return
        listed = ", ".join(registered) if registered else "none (call gym.register(...) when it is imported)"
        raise UserError(f"--env '{env_id}': module '{module}' registers no env '{name}'; the ids it registers: {listed}")
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, [PONG, *gym.registry.keys()], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; try CartPole-v1, pong, or module:EnvId for your own env"
    raise UserError(f"unknown env '{env_id}'{hint}")


def parse_env_kwargs(items: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``--env-kwargs`` ``key=value`` items -> a dict; values are Python literals, else strings.

    The RL Zoo's rule: ``ast.literal_eval`` the value, and keep the plain text when that fails.

    >>> parse_env_kwargs(["is_slippery=False", "map_name=8x8", "size=(3, 4)", "p=0.5"])
    {'is_slippery': False, 'map_name': '8x8', 'size': (3, 4), 'p': 0.5}
    """
    if isinstance(items, dict):
        return dict(items)
    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"--env-kwargs takes key=value pairs (e.g. is_slippery=False), got '{item}'")
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key] = text
    return kwargs


def is_ale(env_id: str) -> bool:
    """The ``pong`` preset, or an id whose env is an ``ale_py`` Atari game (any version)."""
    if is_pong(env_id):
        return True
    check_env_id(env_id)
    return gym.spec(split_module(env_id)[1]).entry_point == ALE_ENTRY_POINT


def accepted_kwargs(env_id: str) -> list[str]:
    """The keyword arguments the env's constructor names (for the error message), or []."""
    entry = gym.spec(split_module(env_id)[1]).entry_point
    try:
        creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
        params = inspect.signature(creator).parameters.values()
    except (ValueError, TypeError, ImportError, AttributeError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.name not in ("self", "render_mode")]


def refuse_kwargs(kwargs: dict[str, Any], owned: dict[str, str]) -> None:
    """A keyword a dirty-rl flag already sets (``owned``: keyword -> flag) is one UserError line."""
    for key, flag in owned.items():
        if key in kwargs:
            raise UserError(f"--env-kwargs {key}=... is set by {flag} here; use that flag instead")


def gym_make(env_id: str, kwargs: dict[str, Any], render_mode: str | None = None, **fixed: Any) -> gym.Env:
    """``gym.make(env_id, **fixed, **kwargs)``; a bad keyword or value is one UserError line.

    Errors raised while the env is built from ``--env-kwargs`` are the user's input, not a bug;
    without env kwargs, an env that fails to build keeps its traceback (it is the env's bug).
    """
    make_kwargs = {**fixed, **kwargs}
    if render_mode is not None:
        # Only when rendering: gym.make hands render_mode to the constructor even as None, and many
        # third-party envs (AgileRL's probes, older custom envs) have no such argument.
        make_kwargs["render_mode"] = render_mode
    try:
        return gym.make(env_id, **make_kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise UserError(f"env '{env_id}' needs an extra package: {exc}") from exc
    except ImportError as exc:  # e.g. phys2d/* without jax, MuJoCo v2/v3 ids moved out of Gymnasium
        raise UserError(f"env '{env_id}' needs a package that is not installed: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:
        if render_mode is not None and isinstance(exc, TypeError) and "'render_mode'" in str(exc):
            raise UserError(
                f"env '{env_id}' cannot render: its constructor takes no render_mode argument; run it without rendering"
            ) from exc
        if not kwargs:
            raise
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, TypeError) and "keyword argument" in first_line:
            accepted = accepted_kwargs(env_id)
            unknown = [k for k in kwargs if k not in accepted] if accepted else sorted(kwargs)
            hint = f"; it accepts: {', '.join(accepted)}" if accepted else ""
            raise UserError(f"env '{env_id}' does not accept the keyword {', '.join(unknown)} (--env-kwargs){hint}") from exc
        what = f"{type(exc).__name__}: {first_line}"
        raise UserError(f"env '{env_id}' could not be made with --env-kwargs {kwargs}: {what}") from exc


def make_env(
    env_id: str,
    *,
    actions: int = 3,
    sticky: float = 0.25,
    render_mode: str | None = None,
    env_kwargs: list[str] | dict[str, Any] | None = None,
) -> gym.Env:
    """Build one env under the observation policy; the action space must be Discrete.

    ``ALE/<Game>-v5`` screens become difference frames (envs/atari_vpg.py), every other
    observation one vector (envs/observations.py); anything unsupported is a UserError.

    Seeding is done by the caller through ``reset(seed=...)`` at every episode start, so an
    episode is reproducible from (seed, rank, episode index) alone; that is what makes exact
    resume possible without pickling emulator state.
    """
    kwargs = parse_env_kwargs(env_kwargs)
    check_env_id(env_id)
    if is_pong(env_id):
        refuse_kwargs(kwargs, {"repeat_action_probability": "--sticky", "full_action_space": "--actions"})
        return make_pong(actions, sticky, render_mode, kwargs)
    ale = is_ale(env_id)
    fixed: dict[str, Any] = {}
    if ale and split_module(env_id)[1].startswith("ALE/"):
        refuse_kwargs(kwargs, {"repeat_action_probability": "--sticky"})
        fixed["repeat_action_probability"] = sticky
    env = gym_make(env_id, kwargs, render_mode, **fixed)
    try:
        check_action_space(env_id, env.action_space)
        if ale and is_image(env.observation_space):
            return wrap_atari_vpg(env)
        return apply_observation_policy(env, env_id)
    except UserError:
        env.close()
        raise


def frames_wrapper(env: Any) -> Any | None:
    """The wrapper in ``env``'s chain that keeps ``raw_frame`` and ``processed_frame``, or None.

    Gymnasium 1.x wrappers no longer forward attribute lookups, so walk the chain.
    """
    while env is not None:
        if "raw_frame" in vars(env) and "processed_frame" in vars(env):
            return env
        env = getattr(env, "env", None)
    return None


def reward_threshold(env_id: str) -> float | None:
    """The env spec's reward threshold (None for Pong, whose spec has none)."""
    if is_pong(env_id):
        return None
    check_env_id(env_id)
    return gym.spec(split_module(env_id)[1]).reward_threshold


def solved_threshold(env_id: str, target_return: float | None) -> float | None:
    """``--target-return`` when given, else the env spec's reward threshold (None for Pong)."""
    return target_return if target_return is not None else reward_threshold(env_id)


def episode_seed(seed: int, rank: int, episode: int) -> int:
    """Seed of one episode: distinct per (seed, rank, episode), reproducible from counters alone.

    >>> episode_seed(1, 0, 0) == episode_seed(1, 0, 0) != episode_seed(1, 1, 0)
    True
    """
    import numpy as np

    return int(np.random.SeedSequence([seed, rank, episode]).generate_state(1)[0])
