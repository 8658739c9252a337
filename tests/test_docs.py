"""The README and docs/ stay true to the code: every relative link resolves, and every
`tunelab ...` command they show exists in the CLI with the long options it is shown with."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from tunelab.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
INLINE = re.compile(r"`(tunelab [^`]+)`")


def _relative_links(text: str) -> list[str]:
    links = [target.split("#")[0] for target in LINK.findall(text)]
    return [t for t in links if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path):
    missing = [t for t in _relative_links(page.read_text(encoding="utf-8")) if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def _shown_commands(text: str) -> list[str]:
    """Each `tunelab ...` invocation in a fenced block (one per line, `$ ` prompts and
    continuation backslashes handled) or inline code span."""
    shown = [m.strip() for m in INLINE.findall(text)]
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ").strip()
            if re.match(r"tunelab [a-z-]+( |$)", line):  # not output such as "tunelab demo: ..."
                shown.append(line.split(" #")[0].split(" | ")[0].split(" && ")[0])
    return shown


def _tokens(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote in prose: the plain words still name the command
        return command.split()


def _is_group(command) -> bool:
    return hasattr(command, "commands")  # typer ships its own click: duck-type rather than isinstance


def _resolve(root, tokens: list[str]) -> tuple[object | None, list[str]]:
    """Walk sub-commands; returns the command reached (None: no such command) and the words
    that named it."""
    command, path = root, []
    for word in tokens[1:]:
        if not _is_group(command) or word.startswith("-") or word == "...":
            break
        sub = command.commands.get(word)
        if sub is None:
            return None, path + [word]
        command, path = sub, path + [word]
    return command, path


def _unknown_options(command, tokens: list[str]) -> list[str]:
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    known.add("--help")
    shown = {t.split("=")[0] for t in tokens if t.startswith("--") and len(t) > 2}
    return sorted(shown - known)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_shown_exist(page: Path):
    root = typer.main.get_command(app)
    problems = []
    for shown in _shown_commands(page.read_text(encoding="utf-8")):
        tokens = _tokens(shown)
        command, path = _resolve(root, tokens)
        if command is None:
            problems.append(f"`{shown}`: no command 'tunelab {' '.join(path)}'")
        elif _is_group(command):
            continue  # a group named in prose ("tunelab data ...")
        else:
            unknown = _unknown_options(command, tokens)
            if unknown:
                problems.append(f"`{shown}`: 'tunelab {' '.join(path)}' has no option {', '.join(unknown)}")
    assert not problems, f"{page.name}:\n" + "\n".join(problems)
