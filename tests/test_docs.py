"""The README and docs/ hold up: every relative link resolves, and every `dirtyrl` command they
show is one the CLI accepts (it parses; nothing is run)."""

import re
import shlex
from pathlib import Path

import pytest

from dirtyrl.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(?:bash|sh|console)\n(.*?)^```", re.M | re.S)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes.

    >>> github_anchor("## `summary.json`")
    'summaryjson'
    """
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def outside_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(outside_code(page.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: broken link {target}"
        if anchor and dest.suffix == ".md":
            anchors = {github_anchor(h) for h in re.findall(r"^#+ .*$", outside_code(dest.read_text()), flags=re.M)}
            assert anchor in anchors, f"{page.name}: no heading for #{anchor} in {dest.name}"


def shown_commands(page: Path) -> list[str]:
    """Each `dirtyrl ...` line of the page's shell blocks, with env assignments and comments dropped."""
    commands = []
    for block in FENCE.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.match(r"^[A-Z_]+=", words[0]):
                words.pop(0)
            if words and words[0] in ("dirtyrl", ".venv/bin/dirtyrl"):
                commands.append(words[1:])
    return commands


def test_the_readme_shows_commands():
    assert len(shown_commands(ROOT / "README.md")) >= 8


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_shown_command_parses(page):
    for argv in shown_commands(page):
        try:
            build_parser(argv).parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{page.name}: `dirtyrl {shlex.join(argv)}` does not parse (exit {exc.code})")
