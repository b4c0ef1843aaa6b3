"""Preprocessing inspection: the raw frame, what preprocessing made of it, and the motion image.

The seed: "Look at the output of the pre-processing. I messed up the pre-processing in various
ways, and that prevents all learning." Its ``func_footer`` decorator showed every 500th frame
and needed a global call counter; here the counter lives in the instrument object.

Each picture is three panels, upscaled so the ball (2x4 screen pixels, 1x2 after
preprocessing) is plain to see:

- raw: the 210x160 screen, x2, with the crop outlined in yellow;
- processed: the network's frame, stretched over exactly the screen area it was cut from, so
  every processed pixel sits beside the screen pixels it came from (Pong: 80x80, x4);
- difference: processed minus the previous processed frame, white where something arrived and
  red where it left. For VPG on Pong this *is* the agent's input (``envs.pong.difference_frame``);
  for DQN's frame stack it is shown for reference (label "motion").

Used two ways: during training (``--debug.inspect-every N``: every Nth input frame to
``RUN_DIR/inspect/`` and to TensorBoard as ``debug/inspect``), and without training
(``dirtyrl inspect --env pong --frames 16``: a contact sheet of random-play frames).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from dirtyrl.envs import frames_wrapper
from dirtyrl.errors import UserError

RAW_SCALE = 2  # 210x160 -> 420x320
HEADER = 20  # label strip above the panels
GAP = 8  # between panels
CROP_COLOUR = (255, 220, 0)
BACKGROUND = (24, 24, 24)
DIFF_COLOURS = {0: (48, 48, 48), 1: (255, 255, 255), -1: (235, 60, 60)}


def crop_rows(wrapper: Any, raw_height: int) -> tuple[int, int]:
    """Screen rows [top, bottom) that the processed frame was cut from."""
    from dirtyrl.envs.pong import FIELD_BOTTOM, FIELD_TOP, PongDifferenceFrames

    # DQN's 'rgb80', 'gray80' and 'gray40' screens on Pong use the same crop as VPG; its 'gray84'
    # screen resizes the whole frame.
    if isinstance(wrapper, PongDifferenceFrames) or (
        getattr(wrapper, "pong_field", False) and getattr(wrapper, "screen", "") in ("rgb80", "gray80", "gray40")
    ):
        return FIELD_TOP, FIELD_BOTTOM
    return 0, raw_height


def is_agent_input_difference(wrapper: Any) -> bool:
    from dirtyrl.envs.pong import PongDifferenceFrames

    return isinstance(wrapper, PongDifferenceFrames)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    """(H, W), (1|3, H, W) or (H, W, 1|3), any integer range -> (H, W, 3) uint8."""
    f = np.asarray(frame)
    if f.ndim == 3 and f.shape[0] in (1, 3) and f.shape[-1] not in (1, 3):
        f = f.transpose(1, 2, 0)
    if f.ndim == 3 and f.shape[-1] == 1:
        f = f[..., 0]
    if f.dtype != np.uint8:
        f = np.clip(f, 0, 255).astype(np.uint8)
    return np.repeat(f[..., None], 3, axis=2) if f.ndim == 2 else f


def _luminance(frame: np.ndarray) -> np.ndarray:
    return _to_rgb(frame).astype(np.int16).mean(axis=2)


def difference_image(current: np.ndarray, previous: np.ndarray, wrapper: Any) -> np.ndarray:
    """(H, W) int8 in {-1, 0, 1}: the agent's own difference frame for VPG on Pong, else the sign
    of the change in brightness."""
    if is_agent_input_difference(wrapper):
        from dirtyrl.envs.pong import difference_frame

        return difference_frame(current, previous)
    return np.sign(_luminance(current) - _luminance(previous)).astype(np.int8)


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.NEAREST))


def compose(
    raw: np.ndarray, processed: np.ndarray, diff: np.ndarray | None, crop: tuple[int, int], labels: tuple[str, str, str]
) -> np.ndarray:
    """The three panels side by side as one (HEADER + 2*H, 3*2*W + 2*GAP, 3) uint8 image."""
    from PIL import Image, ImageDraw

    raw_rgb = _to_rgb(raw)
    h, w = raw_rgb.shape[0] * RAW_SCALE, raw_rgb.shape[1] * RAW_SCALE
    top, bottom = crop[0] * RAW_SCALE, crop[1] * RAW_SCALE
    canvas = np.zeros((HEADER + h, 3 * w + 2 * GAP, 3), np.uint8)
    canvas[:] = BACKGROUND
    canvas[HEADER:, :w] = _resize(raw_rgb, w, h)
    canvas[HEADER + top : HEADER + bottom, w + GAP : 2 * w + GAP] = _resize(_to_rgb(processed), w, bottom - top)
    if diff is not None:
        palette = np.zeros((3, 3), np.uint8)
        for value, colour in DIFF_COLOURS.items():
            palette[value] = colour  # index -1 is the last row
        diff_rgb = palette[diff.astype(np.int64)]
        canvas[HEADER + top : HEADER + bottom, 2 * w + 2 * GAP :] = _resize(diff_rgb, w, bottom - top)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    # The crop outline sits just outside the cropped rows, so it hides no pixel the agent sees.
    draw.rectangle([0, HEADER + max(top - 2, 0), w - 1, HEADER + min(bottom + 1, h - 1)], outline=CROP_COLOUR, width=2)
    for i, label in enumerate(labels):
        draw.text((i * (w + GAP) + 4, 4), label, fill=(230, 230, 230))
    return np.asarray(image)


def triptych(wrapper: Any, previous: np.ndarray | None, title: str = "") -> np.ndarray:
    """The picture for the wrapper's current frames; ``previous`` is the processed frame before."""
    raw, processed = wrapper.raw_frame, wrapper.processed_frame
    crop = crop_rows(wrapper, _to_rgb(raw).shape[0])
    diff = difference_image(processed, previous, wrapper) if previous is not None else None
    p_shape = "x".join(str(s) for s in np.shape(processed))
    kind = "difference = agent input" if is_agent_input_difference(wrapper) else "motion (reference)"
    cropped = "crop in yellow" if crop != (0, raw.shape[0]) else "whole frame used"
    labels = (f"{title}  raw {raw.shape[0]}x{raw.shape[1]}, {cropped}", f"processed {p_shape}", kind)
    return compose(raw, processed, diff, crop, labels)


class PreprocessInspector:
    """``--debug.inspect-every N``: every Nth input frame to ``inspect/`` and TensorBoard.

    The counter is this object's own (``count``): no global, and a new run starts at zero.
    """

    def __init__(self, out_dir: Path, logger: Any, every: int) -> None:
        self.out_dir = Path(out_dir)
        self.logger = logger
        self.every = every
        self.count = 0
        self.written: list[Path] = []
        self.previous: np.ndarray | None = None
        self.pending = False
        self._env: Any = None
        self._wrapper: Any = None

    def on_env_step(self, env: Any, env_step: int) -> None:
        if env is not self._env:
            self._env, self._wrapper = env, frames_wrapper(env)
            if self._wrapper is None:
                print("dirtyrl: --debug.inspect-every: this env has no image preprocessing to inspect; ignored")
        if self._wrapper is None:
            return
        self.count += 1
        previous, self.previous = self.previous, np.array(self._wrapper.processed_frame, copy=True)
        if self.count % self.every == 0:
            self.pending = True
        # The first step of an episode follows the reset frame, which on_env_step never sees:
        # without it the difference would be wrong, so that frame waits for the next step.
        if not self.pending or previous is None:
            return
        self.pending = False
        image = triptych(self._wrapper, previous, f"step {env_step}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"step-{env_step:09d}.png"
        from PIL import Image

        Image.fromarray(image).save(path)
        self.written.append(path)
        self.logger.image("debug/inspect", image, env_step)

    def on_episode_end(self, episode: int) -> None:
        self.previous = None


# ---------------------------------------------------------------------------------------------
# dirtyrl inspect: a contact sheet without training
# ---------------------------------------------------------------------------------------------


def contact_sheet(tiles: list[np.ndarray], columns: int = 2) -> np.ndarray:
    """Tiles (all the same size) in a grid, ``columns`` wide, GAP apart."""
    h, w, _ = tiles[0].shape
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * h + (rows - 1) * GAP, columns * w + (columns - 1) * GAP, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = tile
    return sheet


def collect_frames(env: Any, frames: int, every: int, skip: int, seed: int) -> list[np.ndarray]:
    """Random play; after ``skip`` steps, the triptych of every ``every``-th step."""
    wrapper = frames_wrapper(env)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    previous = np.array(wrapper.processed_frame, copy=True)
    tiles, step = [], 0
    while len(tiles) < frames:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        step += 1
        if step > skip and (step - skip) % every == 0:
            tiles.append(triptych(wrapper, previous, f"step {step}"))
        previous = np.array(wrapper.processed_frame, copy=True)
        if terminated or truncated:
            env.reset()
            previous = np.array(wrapper.processed_frame, copy=True)
    return tiles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env", default="pong", help="pong, ALE/<Game>-v5, or module:EnvId with image observations (default: pong)"
    )
    parser.add_argument(
        "--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="keyword arguments for gym.make, as in train"
    )
    parser.add_argument("--frames", type=int, default=16, help="number of frames on the sheet (default: 16)")
    parser.add_argument("--every", type=int, default=4, help="take every Nth env step (default: 4)")
    parser.add_argument("--skip", type=int, default=40, help="env steps to play before the first frame (default: 40)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the env and the random actions (default: 1)")
    parser.add_argument("--actions", type=int, default=3, choices=[2, 3, 6], help="Pong action set (default: 3)")
    parser.add_argument("--sticky", type=float, default=0.25, help="sticky-action probability (default: 0.25)")
    parser.add_argument(
        "--preprocessing",
        default="vpg",
        choices=["vpg", "dqn"],
        help="vpg: 80x80 difference frames; dqn: the DQN Atari pipeline (default: vpg)",
    )
    parser.add_argument("--columns", type=int, default=2, help="frames per row of the sheet (default: 2)")
    parser.add_argument("--out", default=None, help="output directory (default: runs/inspect-<env>-<time>)")


def make_inspect_env(env_id: str, preprocessing: str, actions: int, sticky: float, env_kwargs: list[str] | None = None) -> Any:
    """The same env factory training uses, so the sheet shows what the agent will see."""
    if preprocessing == "dqn":
        from dirtyrl.envs.atari_dqn import is_atari, make_atari_dqn

        if not is_atari(env_id):
            raise UserError(f"--preprocessing dqn needs pong or an ALE/<Game>-v5 id, got '{env_id}'")
        return make_atari_dqn(env_id, actions=actions, sticky=sticky, env_kwargs=env_kwargs, raw_frames=True)
    from dirtyrl.envs import make_env

    env = make_env(env_id, actions=actions, sticky=sticky, env_kwargs=env_kwargs)
    if frames_wrapper(env) is None:
        env.close()
        raise UserError(
            f"'{env_id}' has no image preprocessing to inspect; try --env pong (or --preprocessing dqn for ALE/<Game>-v5)"
        )
    return env


def run(args: argparse.Namespace) -> int:
    for name in ("frames", "every", "columns"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.skip < 0:
        raise UserError(f"--skip must be >= 0, got {args.skip}")
    env = make_inspect_env(args.env, args.preprocessing, args.actions, args.sticky, args.env_kwargs)
    try:
        tiles = collect_frames(env, args.frames, args.every, args.skip, args.seed)
    finally:
        env.close()
    out = Path(args.out or f"runs/inspect-{args.env.replace('/', '_').replace(':', '_')}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    sheet = contact_sheet(tiles, args.columns)
    path = out / "contact_sheet.png"
    Image.fromarray(sheet).save(path)
    h, w, _ = tiles[0].shape
    print(f"contact sheet: {path} ({len(tiles)} frames of {w}x{h}: raw | processed | difference)")
    return 0
