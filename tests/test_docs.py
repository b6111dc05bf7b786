"""Every recipe command the README and docs/ show composes against the real configs: a renamed group, key or option
fails here instead of in a user's terminal. (The commands that CI runs for real are in tests/recipes/.)"""

import re
import shlex

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from tests.conftest import REPO, compose

COMMAND = re.compile(r"(?<![\w/])recipes/([a-z_]+)\.py((?: +[^\s`|#]+)*)")
PLACEHOLDERS = {"<folder>": "some/folder", "<its sft>": "some/folder", "...": "x"}


def documented_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        for placeholder, value in PLACEHOLDERS.items():
            text = text.replace(placeholder, value)
        for line_number, line in enumerate(text.splitlines(), 1):
            for recipe, args in COMMAND.findall(line):
                words = shlex.split(args)
                overrides = [a for a in words if "=" in a and not a.startswith("-")]
                if "-m" in words:  # a sweep: each of its jobs composes like the first
                    overrides = [o.split(",")[0] for o in overrides]
                found.append((f"{doc.name}:{line_number}", recipe, overrides))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) > 30 and {recipe for _, recipe, _ in COMMANDS} >= {"sft", "dpo", "ppo", "pipeline", "eval"}


@pytest.mark.parametrize("where, recipe, overrides", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_documented_command_composes(where, recipe, overrides):
    try:
        compose(recipe, *[o for o in overrides if not o.startswith("hydra.")])
    except (HydraException, OmegaConfBaseException) as err:
        pytest.fail(f"{where}: python recipes/{recipe}.py {' '.join(overrides)} does not compose: {err}")
