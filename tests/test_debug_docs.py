"""Tier 6: docs/instruments.md runs and covers every debug flag."""

import dataclasses
from pathlib import Path

from dirtyrl.config import DebugConfig

DOCS = Path(__file__).resolve().parents[1] / "docs" / "instruments.md"


def test_the_all_zero_gradients_example_runs(capsys):
    text = DOCS.read_text()
    code = text.split("<!-- example: all-zero-gradients -->")[1].split("```python")[1].split("```")[0]
    exec(compile(code, f"{DOCS}:all-zero-gradients", "exec"), {"__name__": "docs_example"})  # its asserts check it
    assert "zero_grad on 0.weight" in capsys.readouterr().err


def test_every_debug_flag_and_command_is_documented():
    text = DOCS.read_text()
    for f in dataclasses.fields(DebugConfig):
        assert f"--debug.{f.name.replace('_', '-')}" in text, f.name
    for command in ("dirtyrl inspect", "dirtyrl play", "dirtyrl graph", "dirtyrl doctor", "dirtyrl report"):
        assert command in text
    assert "RUN_DIR/RENDER" in text and "press `r`" in text
