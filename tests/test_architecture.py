"""One direction of flow: each trl_ext package imports only the packages below it (docs/architecture.md). A new
import that runs the wrong way (rewards pulling in eval, a library module importing the stages) fails here."""

import ast
import collections

from tests.conftest import REPO

# What each unit (a top-level module or package of trl_ext) may import from trl_ext; leaves import nothing of ours.
ALLOWED = {
    "exceptions": set(),
    "utils": set(),
    "_compat": set(),
    "chat": {"_compat"},
    "config": {"exceptions", "utils"},
    "data": {"_compat", "exceptions", "chat"},
    "distributed": {"_compat"},
    "guards": {"exceptions"},
    "kl": set(),
    "logprobs": {"_compat"},
    "models": {"_compat", "chat", "data", "distributed", "exceptions", "logprobs", "utils"},
    "rewards": {"chat"},
    "sampling": {"chat", "rewards"},
    "rlaif": {"_compat", "chat", "exceptions", "models"},
    "dpo": {"_compat", "logprobs"},
    "ppo": {"_compat", "chat", "distributed", "exceptions", "guards", "kl", "logprobs", "models", "rewards"},
    "eval": {"_compat", "chat", "config", "data", "exceptions", "models", "rewards", "sampling", "rlaif", "utils"},
    "stages": {
        *("_compat", "config", "data", "distributed", "dpo", "eval", "exceptions", "guards", "models", "ppo"),
        *("rewards", "rlaif", "sampling", "utils", "chat"),
    },
    "cli": {"distributed", "exceptions"},
    "__init__": set(),  # lazy exports by name only
}


def imports_by_unit() -> dict[str, set[str]]:
    found = collections.defaultdict(set)
    for path in (REPO / "trl_ext").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        unit = parts[1]  # trl_ext/kl.py -> kl, trl_ext/eval/report.py -> eval, trl_ext/__init__.py -> __init__
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trl_ext."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("trl_ext.")]
            else:
                continue
            found[unit] |= {name.split(".")[1] for name in names} - {unit}
    return found


def test_every_unit_is_declared():
    assert set(imports_by_unit()) <= set(ALLOWED)


def test_imports_run_one_way():
    wrong = {unit: sorted(deps - ALLOWED[unit]) for unit, deps in imports_by_unit().items() if deps - ALLOWED[unit]}
    assert not wrong, f"imports against the flow (see docs/architecture.md): {wrong}"


def test_the_allowed_graph_has_no_cycle():
    seen, done = set(), set()

    def visit(unit, path):
        assert unit not in seen or unit in done, f"cycle: {' -> '.join([*path, unit])}"
        if unit in done:
            return
        seen.add(unit)
        for dep in ALLOWED[unit]:
            visit(dep, [*path, unit])
        done.add(unit)

    for unit in ALLOWED:
        visit(unit, [])
