"""The commands README.md prints, for the tests that run them as printed, and a copy of the
checkout for those that write beside themselves (``runs/``, ``results/``, ``site/``).

A command is a line of a fenced shell block, a table's ``one command`` cell, or an inline
code span that starts with ``make``, ``python`` or ``ray``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STARTS = ("make ", "python ", "ray ")


def commands() -> list[str]:
    """Every command README.md prints, in order, each once (comments after ``#`` dropped)."""
    text = (ROOT / "README.md").read_text()
    found: list[str] = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        found += [line.split("#")[0].strip() for line in block.splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return list(dict.fromkeys(c for c in found if c.startswith(STARTS)))


def command(prefix: str, **placeholders: str) -> list[str]:
    """The argv of the one README command that starts with ``prefix``, its ``<name>``
    placeholders filled in."""
    matches = ([c for c in commands() if c == prefix]
               or [c for c in commands() if c.startswith(prefix)])
    assert len(matches) == 1, f"README.md prints {len(matches)} commands starting {prefix!r}"
    line = matches[0]
    for name, value in placeholders.items():
        assert f"<{name}>" in line, (name, line)
        line = line.replace(f"<{name}>", value)
    assert "<" not in line, f"a placeholder is left in {line!r}"
    return shlex.split(line)


def working_files() -> list[Path]:
    """The working tree's files: tracked ones and untracked ones git does not ignore."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return [ROOT / f for f in files if (ROOT / f).is_file()]


def checkout(dest: Path) -> Path:
    """A copy of the working tree (``working_files``, their times kept, so make sees the
    environment as up to date) with ``.venv`` linked to this one's: the README's commands run in
    it as a user runs them in a fresh clone."""
    for f in working_files():
        (dest / f.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / f.relative_to(ROOT))
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


_NOT_A_USERS_SHELL = {"RAY_ADDRESS", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"}


def shell_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell has with the project's virtual environment active
    (``python`` and ``ray`` are its), without a Ray cluster address of anyone else's and
    without the variables of a ``make`` the suite itself runs under (CI runs ``make test``:
    with them a ``make`` the test starts is a sub-make, which prints the directories it
    enters and leaves and shares the parent's job server)."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_A_USERS_SHELL}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}
