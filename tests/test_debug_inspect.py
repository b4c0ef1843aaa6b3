"""Tier 6: preprocessing inspection writes PNGs of the right size, crop visible, panels aligned."""

import argparse

import numpy as np
import pytest
from PIL import Image

from dirtyrl.debug import inspect
from dirtyrl.debug.inspect import CROP_COLOUR, DIFF_COLOURS, GAP, HEADER, PreprocessInspector
from dirtyrl.envs import make_env
from dirtyrl.envs.pong import FIELD_BOTTOM, FIELD_TOP
from dirtyrl.errors import UserError
from dirtyrl.telemetry import RunLogger

WIDTH, HEIGHT = 3 * 320 + 2 * GAP, HEADER + 420  # three panels of 320 (160 x2 / 80 x4), raw 210 x2


def run_tool(*argv):
    parser = argparse.ArgumentParser()
    inspect.add_arguments(parser)
    return inspect.run(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def pong():
    env = make_env("pong", sticky=0.0)
    yield env
    env.close()


def play(env, inspector, steps, first_step=1):
    rng = np.random.default_rng(0)
    obs = None
    for step in range(first_step, first_step + steps):
        obs, *_ = env.step(int(rng.integers(3)))
        inspector.on_env_step(env, step)
    return obs


def test_every_nth_frame_is_written_with_the_crop_outlined_and_panels_aligned(pong, tmp_path):
    pong.reset(seed=1)
    inspector = PreprocessInspector(tmp_path / "inspect", RunLogger(None), every=10)
    obs = play(pong, inspector, 60)
    assert [p.name for p in inspector.written] == [f"step-{k:09d}.png" for k in range(10, 61, 10)]
    image = np.asarray(Image.open(inspector.written[-1]).convert("RGB"))
    assert image.shape == (HEIGHT, WIDTH, 3)
    top, bottom = HEADER + 2 * FIELD_TOP, HEADER + 2 * FIELD_BOTTOM
    # The crop outline lies on the raw panel just outside the cropped rows (the score bar
    # above, the border below), so it is visible and hides nothing the agent sees.
    assert (image[top - 1, 4:316] == CROP_COLOUR).all() and (image[bottom, 4:316] == CROP_COLOUR).all()
    assert not (image[top:bottom, 4:316] == CROP_COLOUR).all(axis=-1).any()
    # The processed panel is the wrapper's 80x80 frame at x4, level with the crop.
    processed = image[top:bottom, 320 + GAP : 640 + GAP, 0]
    assert (processed == np.kron(pong.processed_frame, np.ones((4, 4), np.uint8))).all()
    # The difference panel is exactly the observation the agent got, coloured.
    diff = image[top:bottom, 640 + 2 * GAP :]
    expected = np.array([DIFF_COLOURS[v] for v in (0, 1, -1)], np.uint8)[np.kron(obs, np.ones((4, 4), np.int8)) % 3]
    assert (diff == expected).all() and (obs != 0).any()


def test_the_counter_belongs_to_the_instrument_and_an_episode_start_waits_a_step(pong, tmp_path):
    pong.reset(seed=2)
    first = PreprocessInspector(tmp_path / "a", RunLogger(None), every=4)
    play(pong, first, 3)
    first.on_episode_end(0)
    second = PreprocessInspector(tmp_path / "b", RunLogger(None), every=4)  # a new run starts at zero
    pong.reset(seed=3)
    play(pong, second, 4)
    assert second.count == 4 and [p.name for p in second.written] == ["step-000000004.png"]
    # The 4th frame of `first` is the first step of an episode: its difference needs the reset
    # frame, which on_env_step never sees, so it is written one step late.
    pong.reset(seed=4)
    play(pong, first, 2, first_step=4)
    assert first.count == 5 and [p.name for p in first.written] == ["step-000000005.png"]


def test_non_image_env_is_ignored(tmp_path, capsys):
    env = make_env("CartPole-v1")
    env.reset(seed=0)
    inspector = PreprocessInspector(tmp_path, RunLogger(None), every=1)
    env.step(0)
    inspector.on_env_step(env, 1)
    assert inspector.written == [] and "no image preprocessing" in capsys.readouterr().out


def test_contact_sheet_without_training(tmp_path):
    assert run_tool("--env", "pong", "--frames", "3", "--every", "2", "--out", str(tmp_path)) == 0
    sheet = Image.open(tmp_path / "contact_sheet.png")
    assert sheet.size == (2 * WIDTH + GAP, 2 * HEIGHT + GAP)  # 3 frames, 2 per row


def test_contact_sheet_of_a_vector_env_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no image preprocessing"):
        run_tool("--env", "CartPole-v1", "--out", str(tmp_path))
