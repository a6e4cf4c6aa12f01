"""What the docs and the code point to exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted((REPO / "kapsa").rglob("*.py")),
    *sorted((REPO / "bench").rglob("*.py")),
    *sorted(p for p in (REPO / "deploy").rglob("*") if p.suffix in (".yaml", ".sh")),
]
_CITED = re.compile(r"(?<![\w/.-])([\w./-]*[\w-]+\.md)\b")


def _markdown_files() -> set[str]:
    return {
        str(path.relative_to(REPO))
        for path in REPO.rglob("*.md")
        if ".venv" not in path.parts and "work" not in path.parts[:1]
    }


def test_every_cited_document_is_in_the_repository() -> None:
    known = _markdown_files()
    names = {Path(p).name for p in known}
    missing = []
    for source in SOURCES:
        for cited in _CITED.findall(source.read_text(encoding="utf-8")):
            if cited not in known and Path(cited).name not in names:
                missing.append(f"{source.relative_to(REPO)} cites {cited}")
    assert missing == []


def test_benchmark_commands_run_as_modules_that_exist() -> None:
    page = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    commands = re.findall(r"^command: (.+)$", page, flags=re.MULTILINE)
    assert commands
    for command in commands:
        words = command.split()
        assert words[:2] == [".venv/bin/python", "-m"], command
        assert (REPO / Path(*words[2].split("."))).with_suffix(".py").is_file(), command
