"""The one exception type that means "the user asked for something we cannot do", and how the
CLI tells an exception raised in the user's own code from a dirty-rl bug.

The CLI prints a UserError's message as a single line and exits with status 2. Anything else
that escapes keeps its traceback: after one line naming the user's function when the
exception came out of the user's code (their env, their agent), as it is when dirty-rl itself
is at fault.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from types import TracebackType

# Code the user did not write, besides the stdlib: dirty-rl and the libraries it drives itself.
# A frame in one of these is never "your code"; an env package (AgileRL, ...) is.
LIBRARY_PACKAGES = ("dirtyrl", "gymnasium", "torch", "numpy", "ale_py", "tensorboard", "PIL", "matplotlib", "cv2")


class UserError(Exception):
    """Bad input: unknown env, bad number, missing or mismatched checkpoint, wrong action space."""


@dataclass(frozen=True)
class UserFrame:
    """Where the user's code was when an exception left it: the function dirty-rl called."""

    function: str
    filename: str
    lineno: int
    exc: BaseException


def library_dirs() -> list[str]:
    """Folders whose files are library code: the stdlib's, and each LIBRARY_PACKAGES package's.

    A package counts only once imported (a frame of it can exist only then), so nothing is
    imported here.
    """
    paths = sysconfig.get_paths()
    dirs = {paths["stdlib"], paths["platstdlib"]}
    for name in LIBRARY_PACKAGES:
        module = sys.modules.get(name)
        where = getattr(module, "__file__", None)
        if where:
            dirs.add(os.path.dirname(where))
    return sorted(os.path.realpath(d) + os.sep for d in dirs)


def is_library_file(filename: str, dirs: list[str]) -> bool:
    """Whether a frame in ``filename`` is library code (see ``library_dirs``), not the user's.

    Installed packages sit under the stdlib folder in some layouts (``/usr/lib/python3/
    dist-packages``), so a ``site-packages``/``dist-packages`` path is stdlib only if it is one of
    the named packages. Generated code (``<frozen ...>``, ``<string>``) counts as library.

    >>> dirs = ["/usr/lib/python3.11/", "/venv/site-packages/torch/"]
    >>> [is_library_file(f, dirs) for f in ("/usr/lib/python3.11/json/decoder.py", "<frozen runpy>",
    ...     "/venv/site-packages/torch/nn/modules/module.py", "/usr/lib/python3.11/site-packages/agilerl/probe.py",
    ...     "/home/me/my_env.py")]
    [True, True, True, False, False]
    """
    if filename.startswith("<"):
        return True
    path = os.path.realpath(filename)
    for folder in dirs:
        if path.startswith(folder):
            inside = path[len(folder) :].split(os.sep)
            if "site-packages" in inside or "dist-packages" in inside:
                continue  # a third-party package installed below the stdlib folder
            return True
    return False


def user_frame(exc: BaseException) -> UserFrame | None:
    """The outermost frame of ``exc``'s traceback that is not library code, or None (a dirty-rl bug).

    The outermost such frame is the user's function that dirty-rl (or Gymnasium, or torch) called:
    their env's ``step``, their agent's ``act``. An exception that library code re-raised ``from``
    the user's (``gym.make`` does, for a constructor's error) is looked for in its cause.
    """
    dirs = library_dirs()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb: TracebackType | None = current.__traceback__
        for frame, lineno in traceback.walk_tb(tb):
            code = frame.f_code
            if not is_library_file(code.co_filename, dirs):
                name = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
                return UserFrame(name, code.co_filename, lineno, current)
        current = current.__cause__
    return None


def user_code_line(found: UserFrame) -> str:
    """The one line printed before the traceback of an exception from the user's code."""
    message = str(found.exc).splitlines()[0] if str(found.exc).strip() else ""
    where = f"{found.function} ({found.filename}:{found.lineno})"
    said = f": {message}" if message else ""
    return f"your code raised {type(found.exc).__name__} in {where}{said}; its traceback follows"
