"""README.md documents the whole command line: every subcommand and every flag `--help` shows."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from bulkops.cli import COMMANDS
from tests.harness import cli_command, cli_env

README = Path(__file__).resolve().parents[1] / "README.md"
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _help(*command: str) -> str:
    return subprocess.run(cli_command(*command, "--help"), capture_output=True, text=True, check=True,
                          env=cli_env()).stdout


def test_every_subcommand_appears_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    listed = set(re.findall(r"^    ([a-z][a-z-]+)\s", _help(), re.MULTILINE))
    assert listed == set(COMMANDS)
    missing = [name for name in COMMANDS if f"bulkops {name}" not in readme]
    assert not missing, f"README.md never shows: {', '.join(f'bulkops {m}' for m in missing)}"


def test_every_flag_of_every_subcommand_appears_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    documented = set(FLAG.findall(readme))
    missing = {f"bulkops {name} {flag}" for name in COMMANDS for flag in FLAG.findall(_help(name))
               if flag not in documented and flag != "--help"}
    missing |= {f"bulkops {flag}" for flag in FLAG.findall(_help()) if flag not in documented
                and flag != "--help"}
    assert not missing, "README.md never mentions: " + ", ".join(sorted(missing))
