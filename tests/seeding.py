"""Copies of the example agents and scripts with bugs seeded in: the one way the tests make them."""

import importlib
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def seeded_source(example: str, edits: list[tuple[str, str]]) -> str:
    """``examples/<example>.py`` with each (old, new) of ``edits`` applied; each ``old`` must be
    found exactly once, so that an edit of the example cannot silently unseed a bug."""
    text = (EXAMPLES / f"{example}.py").read_text()
    for old, new in edits:
        assert text.count(old) == 1, f"{old!r} not found once in {example}.py"
        text = text.replace(old, new)
    return text


def seeded_agent(tmp_path: Path, monkeypatch, example: str, edits: list[tuple[str, str]], name: str) -> str:
    """The seeded copy as an importable module ``name``; returns the doctor's ``name:make_agent``."""
    (tmp_path / f"{name}.py").write_text(seeded_source(example, edits))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return f"{name}:make_agent"
