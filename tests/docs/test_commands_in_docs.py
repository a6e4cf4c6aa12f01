"""Every `kapsa` command line in the docs names a command and options that exist.

A renamed option (`--resync-seconds` became `--resync`) or a command that was never written
(`kapsa status`, once) would otherwise stay in the docs until a user typed it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from kapsa.cli import app, commands  # noqa: F401  (registers the sub-commands, as `kapsa` does)

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_BLOCK = re.compile(r"```(sh|bash|console|shell)\n(.*?)```", re.DOTALL)
#: `kapsa` where a shell runs it: first on the line, or after `|`, `;`, `&&`, `$(` or a backquote.
_CALL = re.compile(r"(?:^|[;&|(`]\s*)kapsa(?=\s|$)((?:\s+[^\s;|&`)]+)*)")


def _command_lines() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for language, block in _BLOCK.findall(page.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                if language == "console" and not line.startswith("$ "):
                    continue  # what a command printed
                code = line.split("  #", 1)[0].removeprefix("$ ").strip()
                for match in _CALL.finditer(code):
                    found.append((page.name, "kapsa" + match.group(1)))
    return found


LINES = _command_lines()


def test_the_docs_show_the_commands_users_need() -> None:
    shown = {line.split()[1] for _, line in LINES if len(line.split()) > 1}
    assert {"history", "status", "reconcile", "rollback", "diff-releases"} <= shown


@pytest.mark.parametrize(("page", "line"), LINES, ids=[f"{p}: {line}" for p, line in LINES])
def test_each_command_line_in_the_docs_parses(page: str, line: str) -> None:
    command = typer.main.get_command(app)
    words = shlex.split(line)[1:]
    while hasattr(command, "get_command") and words and not words[0].startswith("-"):
        sub = command.get_command(typer.Context(command), words[0])
        assert sub is not None, f"{page}: `{line}`: no command {words[0]!r}"
        command, words = sub, words[1:]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in words:
        if word.startswith("-") and not word.startswith("---"):
            option = word.split("=", 1)[0]
            assert option in known, f"{page}: `{line}`: {command.name} has no option {option}"
