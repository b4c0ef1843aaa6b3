"""Watching the game: live rendering you can switch on and off, and recorded episodes.

The seed: "Watch the game play by rendering the game frames ... If rendering is too expensive,
but you want to peek every once in a while, add interactive rendering: allow keyboard or file
to toggle environment rendering."

- ``--debug.render``: show the game while training. With a display it opens a window
  (pygame); without one (a server, CI) the frames go to ``RUN_DIR/videos/render-*.gif``.
- The toggle: rendering is on exactly while the control file ``RUN_DIR/RENDER`` exists.
  ``--debug.render`` creates it; ``rm RUN_DIR/RENDER`` stops rendering and ``touch
  RUN_DIR/RENDER`` starts it again, from any shell. Pressing ``r`` in the training terminal
  (or in the game window) creates/removes the same file. The file and the keyboard are polled
  at most every 0.25 s, so a hidden renderer costs one clock read per step.
- ``--debug.video-every N``: the 1st, (N+1)th, (2N+1)th ... episode of the run goes to
  ``RUN_DIR/videos/episode-<k>-step-<env step>.gif``, display or not.

Videos are animated GIFs written with Pillow (no ffmpeg needed). A GIF holds its frames in
memory until it is written, so files are split every ``max_frames`` frames (``-part2`` ...).
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CONTROL_FILE = "RENDER"
TOGGLE_KEY = "r"


def has_display() -> bool:
    """Can a window be opened here? (X11/Wayland on Linux; always on macOS and Windows.)"""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def takes_render_mode(env_class: type) -> bool:
    """Whether the constructor has a ``render_mode`` argument (or ``**kwargs``), as Gymnasium asks.

    Many third-party envs (AgileRL's probes, older custom envs) have none: they cannot be asked
    to draw, and are made without one (envs.gym_make).
    """
    try:
        params = inspect.signature(env_class).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature: let render() decide
        return True
    return any(p.name == "render_mode" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def no_frames_reason(env: Any) -> str:
    """Why ``env_frame`` gets no picture from ``env``: the clause of a one-line message."""
    base = env.unwrapped
    if not takes_render_mode(type(base)):
        return f"{type(base).__name__}.__init__ takes no render_mode argument"
    return f"it lists no 'rgb_array' render mode (metadata render_modes: {base.metadata.get('render_modes', [])})"


def env_frame(env: Any) -> np.ndarray | None:
    """An (H, W, 3) uint8 picture of the env's current state, or None if it cannot draw itself.

    ALE: the emulator screen. Others: ``render()`` in rgb_array mode (switched on in place for an
    env made without a render mode, which classic-control envs allow).
    """
    base = env.unwrapped
    ale = getattr(base, "ale", None)
    if ale is not None:
        return ale.getScreenRGB()
    if getattr(base, "render_mode", None) is None and "rgb_array" in base.metadata.get("render_modes", []):
        base.render_mode = "rgb_array"
    if getattr(base, "render_mode", None) != "rgb_array":
        return None
    if not has_display():
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame-drawn envs: no window system to ask
    frame = base.render()
    return np.asarray(frame) if frame is not None else None


class VideoWriter:
    """Animated GIF in parts of at most ``max_frames`` frames; ``close()`` returns the files."""

    def __init__(self, stem: Path, fps: int = 30, max_frames: int = 1500) -> None:
        self.stem = Path(stem)
        self.duration_ms = max(round(1000 / fps), 20)
        self.max_frames = max_frames
        self.frames: list[Any] = []
        self.paths: list[Path] = []

    def append(self, frame: np.ndarray) -> None:
        from PIL import Image

        # Palette frames: a third of the memory of RGB, and what a GIF stores anyway.
        self.frames.append(Image.fromarray(np.ascontiguousarray(frame)).quantize(64, method=Image.Quantize.FASTOCTREE))
        if len(self.frames) >= self.max_frames:
            self._flush()

    def _flush(self) -> None:
        if not self.frames:
            return
        part = f"-part{len(self.paths) + 1}" if self.paths or len(self.frames) >= self.max_frames else ""
        path = self.stem.with_name(self.stem.name + part + ".gif")
        path.parent.mkdir(parents=True, exist_ok=True)
        first, *rest = self.frames
        first.save(path, save_all=True, append_images=rest, duration=self.duration_ms, loop=0)
        self.paths.append(path)
        self.frames = []

    def close(self) -> list[Path]:
        self._flush()
        return self.paths


class Window:
    """A pygame window showing frames at ``scale``x; ``show`` returns the keys pressed in it."""

    def __init__(self, title: str, scale: int = 2) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        self.pygame = pygame
        pygame.display.init()
        self.title = title
        self.scale = scale
        self.screen = None
        self.closed = False

    def show(self, frame: np.ndarray) -> str:
        pg = self.pygame
        h, w = frame.shape[:2]
        if self.screen is None:
            self.screen = pg.display.set_mode((w * self.scale, h * self.scale))
            pg.display.set_caption(self.title)
        surface = pg.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        self.screen.blit(pg.transform.scale(surface, self.screen.get_size()), (0, 0))
        pg.display.flip()
        keys = ""
        for event in pg.event.get():
            if event.type == pg.QUIT:
                self.closed = True
            elif event.type == pg.KEYDOWN and event.unicode:
                keys += event.unicode
        return keys

    def close(self) -> None:
        if self.screen is not None:
            self.pygame.display.quit()
            self.screen = None


class KeyReader:
    """Non-blocking key presses from the terminal (cbreak mode), restored by ``close()``.

    Only for a foreground process whose stdin is a terminal: changing the mode of a terminal
    from a background job would stop the process (SIGTTOU).
    """

    def __init__(self, stream: Any = None) -> None:
        import termios
        import tty

        self.stream = stream or sys.stdin
        self.fd = self.stream.fileno()
        self.termios = termios
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)  # keys arrive one at a time, without echo; Ctrl-C still works

    @staticmethod
    def available(stream: Any = None) -> bool:
        stream = stream or sys.stdin
        try:
            import termios  # noqa: F401  (absent on Windows)

            fd = stream.fileno()
            return stream.isatty() and os.getpgrp() == os.tcgetpgrp(fd)
        except (ImportError, OSError, ValueError, AttributeError):
            return False

    def read(self) -> str:
        import select

        keys = ""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 64)
            if not chunk:
                break
            keys += chunk.decode(errors="ignore")
        return keys

    def close(self) -> None:
        if self.saved is not None:
            self.termios.tcsetattr(self.fd, self.termios.TCSADRAIN, self.saved)
            self.saved = None


class RenderToggle:
    """On exactly while ``path`` exists; a key press creates or removes it. Polled at most every
    ``interval`` seconds."""

    def __init__(self, path: Path, initially_on: bool, keys: KeyReader | None = None, interval: float = 0.25) -> None:
        self.path = Path(path)
        self.keys = keys
        self.interval = interval
        self.next_check = 0.0
        if initially_on:
            self.set(True)
        self.on = self.path.exists()

    def set(self, on: bool) -> None:
        if on:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("rendering is on while this file exists: rm it to stop, touch it to start again\n")
        else:
            self.path.unlink(missing_ok=True)
        self.on = on

    def press(self, keys: str) -> None:
        for _ in range(keys.lower().count(TOGGLE_KEY)):
            self.set(not self.path.exists())

    def poll(self) -> bool:
        now = time.monotonic()
        if now < self.next_check:
            return self.on
        self.next_check = now + self.interval
        if self.keys is not None:
            self.press(self.keys.read())
        self.on = self.path.exists()
        return self.on

    def close(self) -> None:
        if self.keys is not None:
            self.keys.close()
            self.keys = None
        self.path.unlink(missing_ok=True)  # the file describes a live run


class Renderer:
    """The ``--debug.render`` / ``--debug.video-every`` instrument."""

    def __init__(
        self,
        run_dir: Path,
        render: bool,
        video_every: int = 0,
        *,
        display: bool | None = None,
        keys: bool | None = None,
        interval: float = 0.25,
        fps: int = 30,
        max_frames: int = 1500,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.videos = self.run_dir / "videos"
        self.video_every = video_every
        self.display = has_display() if display is None else display
        self.fps = fps
        self.max_frames = max_frames
        self.toggle: RenderToggle | None = None
        self.window: Window | None = None
        self.live: VideoWriter | None = None  # rendering without a display
        self.episode_video: VideoWriter | None = None
        self.episodes_seen = 0
        self.written: list[Path] = []
        self._no_frames = False
        if render:
            use_keys = KeyReader.available() if keys is None else keys
            self.toggle = RenderToggle(self.run_dir / CONTROL_FILE, True, KeyReader() if use_keys else None, interval)
            where = "a window" if self.display else f"{self.videos}/render-*.gif (no display)"
            key_hint = f"press '{TOGGLE_KEY}' or " if use_keys else ""
            print(f"dirtyrl: rendering to {where}; to toggle, {key_hint}create/remove {self.toggle.path}")
        self._want_episode = video_every > 0  # the first episode is recorded

    # -- hook points ------------------------------------------------------------------------
    def on_env_step(self, env: Any, env_step: int) -> None:
        live = self.toggle.poll() if self.toggle is not None else False
        if not live and self.live is not None:
            self._finish(self.live)
            self.live = None
        if not live and self.window is not None:
            self.window.close()  # an open window that is no longer pumped would hang
            self.window = None
        if not live and not self._want_episode and self.episode_video is None:
            return
        frame = env_frame(env)
        if frame is None:
            if not self._no_frames:
                print(
                    f"dirtyrl: warning: rendering: this env cannot draw itself ({no_frames_reason(env)}); "
                    "training goes on without frames",
                    file=sys.stderr,
                )
                self._no_frames = True
            return
        if live:
            self._show(frame, env_step)
        if self._want_episode:
            stem = self.videos / f"episode-{self.episodes_seen:06d}-step-{env_step:09d}"
            self.episode_video = VideoWriter(stem, self.fps, self.max_frames)
            self._want_episode = False
        if self.episode_video is not None:
            self.episode_video.append(frame)

    def on_episode_end(self, episode: int) -> None:
        self.episodes_seen += 1
        if self.episode_video is not None:
            self._finish(self.episode_video)
            self.episode_video = None
        if self.live is not None:  # one file per episode keeps GIFs small
            self._finish(self.live)
            self.live = None
        self._want_episode = self.video_every > 0 and self.episodes_seen % self.video_every == 0

    def _show(self, frame: np.ndarray, env_step: int) -> None:
        if self.display and self.window is None:
            try:
                self.window = Window(f"dirty-rl: {self.run_dir.name} ('{TOGGLE_KEY}' hides)")
            except Exception as exc:  # no pygame, or the display refused us: fall back to files
                print(f"dirtyrl: rendering: no window ({type(exc).__name__}: {exc}); writing {self.videos} instead")
                self.display = False
        if self.display and self.window is not None:
            keys = self.window.show(frame)
            if self.window.closed:
                keys += TOGGLE_KEY
                self.window.close()
                self.window = None
            if self.toggle is not None and keys:
                self.toggle.press(keys)
            return
        if self.live is None:
            self.live = VideoWriter(self.videos / f"render-step-{env_step:09d}", self.fps, self.max_frames)
        self.live.append(frame)

    def _finish(self, writer: VideoWriter) -> None:
        self.written += writer.close()

    def close(self) -> None:
        for writer in (self.live, self.episode_video):
            if writer is not None:
                self._finish(writer)
        self.live = self.episode_video = None
        if self.window is not None:
            self.window.close()
            self.window = None
        if self.toggle is not None:
            self.toggle.close()
            self.toggle = None
