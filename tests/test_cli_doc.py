"""The command-line docs cannot drift: docs/cli.md is what `--help` prints today, and the README
names only commands and flags that exist (and every command)."""

from __future__ import annotations

import re
from pathlib import Path

from bulkops.cli import COMMANDS
from bulkops.clidoc import REGENERATE, help_text, render

REPO = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
COMMAND = re.compile(r"(?:`|\bbin/)bulkops ([a-z][a-z-]*)")  # in code (`bulkops x`, .venv/bin/bulkops x), not prose
README_MAX_LINES = 300
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)
OTHER_TOOLS_FLAGS = {"--now"}  # systemctl enable --now


def _readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_docs_cli_md_is_what_every_help_prints_today() -> None:
    written = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert written == render(), f"docs/cli.md is stale: run `{REGENERATE}` and commit it"


def test_docs_cli_md_has_the_help_of_every_command() -> None:
    written = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in COMMANDS:
        assert f"## bulkops {name}\n" in written and f"usage: bulkops {name} " in written, name


def test_every_command_the_readme_names_exists_and_every_command_is_named() -> None:
    named = set(COMMAND.findall(_readme()))
    assert named - set(COMMANDS) == set(), "README.md names commands bulkops does not have"
    assert set(COMMANDS) - named == set(), "README.md never shows these commands"


def test_every_flag_the_readme_names_is_a_flag_of_some_command() -> None:
    known = set(FLAG.findall(help_text()))
    for name in COMMANDS:
        known |= set(FLAG.findall(help_text(name)))
    unknown = set(FLAG.findall(_readme())) - known - OTHER_TOOLS_FLAGS
    assert not unknown, f"README.md names flags no command has: {', '.join(sorted(unknown))}"


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_of_the_readme_and_the_docs_reaches_a_file_and_heading() -> None:
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            headings = ({_anchor(h) for h in HEADING.findall(linked.read_text(encoding="utf-8"))}
                        if linked.is_file() and linked.suffix == ".md" else set())
            if not linked.exists() or (anchor and anchor not in headings):
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert not broken, "links to nothing: " + ", ".join(broken)


def test_the_readme_stays_an_operators_guide_of_at_most_300_lines() -> None:
    lines = _readme().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines: move reference text to docs/ (docs/design.md, docs/cli.md)")
    # .ci/run runs the second set-up command: the README opens with exactly those two.
    assert lines[2:6] == [
        "```bash",
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/bulkops demo",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/mypy && .venv/bin/python -m pytest",
        "```",
    ]
