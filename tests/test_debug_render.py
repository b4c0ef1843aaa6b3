"""Tier 6: the render toggle follows the control file and the keyboard; videos and play write GIFs."""

import argparse
import os
import pty
import termios

import numpy as np
import pytest
from PIL import Image

from dirtyrl.algos import vpg
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig
from dirtyrl.commands import play
from dirtyrl.debug.render import KeyReader, Renderer, RenderToggle
from dirtyrl.envs import make_env


def gif_frames(path):
    """Frames in a GIF, counted by duration (Pillow merges identical consecutive frames)."""
    with Image.open(path) as im:
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    return round(sum(durations) / min(durations)) if durations else 0


def steps(env, renderer, n, start=0):
    rng = np.random.default_rng(start)
    for i in range(n):
        env.step(int(rng.integers(env.action_space.n)))
        renderer.on_env_step(env, start + i + 1)


@pytest.fixture(scope="module")
def pong():
    env = make_env("pong", sticky=0.0)
    env.reset(seed=0)
    yield env
    env.close()


def test_rendering_follows_the_control_file(pong, tmp_path):
    renderer = Renderer(tmp_path, render=True, display=False, keys=False, interval=0.0)
    control = tmp_path / "RENDER"
    assert control.exists()  # --debug.render creates it: rendering starts on
    steps(pong, renderer, 5)
    control.unlink()  # `rm RUN_DIR/RENDER`: off; the segment so far is written out
    steps(pong, renderer, 4, start=5)
    assert [p.name for p in renderer.written] == ["render-step-000000001.gif"]
    assert gif_frames(renderer.written[0]) == 5
    control.touch()  # `touch RUN_DIR/RENDER`: on again, a new segment
    steps(pong, renderer, 3, start=9)
    renderer.close()
    assert [p.name for p in renderer.written] == ["render-step-000000001.gif", "render-step-000000010.gif"]
    assert gif_frames(renderer.written[1]) == 3
    assert Image.open(renderer.written[1]).size == (160, 210)
    assert not control.exists()  # the file describes a live run


def test_the_control_file_is_polled_at_most_every_interval(pong, tmp_path):
    renderer = Renderer(tmp_path, render=True, display=False, keys=False, interval=3600.0)
    steps(pong, renderer, 2)
    (tmp_path / "RENDER").unlink()
    steps(pong, renderer, 2, start=2)  # not polled yet: still rendering
    assert renderer.live is not None and len(renderer.live.frames) == 4
    renderer.close()


def test_a_key_press_in_the_terminal_toggles_the_file(tmp_path):
    master, slave = pty.openpty()  # a terminal of our own, as the training process would have
    stream = os.fdopen(slave, "r")
    before = termios.tcgetattr(slave)
    try:
        keys = KeyReader(stream)
        assert termios.tcgetattr(slave) != before  # cbreak: keys arrive without Enter
        toggle = RenderToggle(tmp_path / "RENDER", initially_on=True, keys=keys, interval=0.0)
        assert toggle.poll() is True
        os.write(master, b"r")
        assert toggle.poll() is False and not toggle.path.exists()
        os.write(master, b"xr")
        assert toggle.poll() is True and toggle.path.exists()
        toggle.close()
        assert termios.tcgetattr(slave) == before  # the terminal is restored
    finally:
        stream.close()
        os.close(master)


def test_video_every_records_every_nth_episode(tmp_path):
    env = make_env("CartPole-v1")
    renderer = Renderer(tmp_path, render=False, video_every=2, display=False)
    for episode in range(5):
        env.reset(seed=episode)
        done, step = False, 0
        while not done:
            _, _, terminated, truncated, _ = env.step(step % 2)
            step += 1
            renderer.on_env_step(env, episode * 1000 + step)
            done = terminated or truncated
        renderer.on_episode_end(episode)
    renderer.close()
    env.close()
    names = [p.name for p in renderer.written]
    assert names == [
        "episode-000000-step-000000001.gif",
        "episode-000002-step-000002001.gif",
        "episode-000004-step-000004001.gif",
    ]
    assert not (tmp_path / "RENDER").exists()


def test_training_with_video_every_and_play_a_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    vpg.train(
        vpg.Config(
            env=EnvConfig(env="CartPole-v1"),
            run=RunConfig(total_episodes=8, run_dir=str(run_dir), progress="off"),
            debug=DebugConfig(video_every=4),
        )
    )
    assert sorted(p.name.split("-step")[0] for p in (run_dir / "videos").iterdir()) == ["episode-000000", "episode-000004"]
    parser = argparse.ArgumentParser()
    play.add_arguments(parser)
    video = tmp_path / "watch.gif"
    args = parser.parse_args([str(run_dir / "checkpoints" / "latest.pt"), "--episodes", "2", "--video", str(video)])
    assert play.run(args) == 0
    out = capsys.readouterr().out
    assert out.count("episode ") == 2 and "mean return over 2 episodes" in out
    assert gif_frames(video) > 10
