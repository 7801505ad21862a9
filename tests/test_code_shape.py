"""Shape rules read from the source with :mod:`ast` (nothing is imported).

- No function or method under ``contrastive_seq/training/`` is longer than
  :data:`MAX_FUNCTION_LINES` lines (from its ``def`` to its last line, docstring included).
- Only ``contrastive_seq/seeding.py`` seeds, captures or restores the global
  random streams (Python's ``random``, NumPy's global generator, torch's CPU
  and CUDA generators); every other module calls its functions. Seeding a
  ``torch.Generator`` object of one's own is not touching a global stream.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "contrastive_seq"
MAX_FUNCTION_LINES = 60
SEEDING = PACKAGE / "seeding.py"

GLOBAL_RANDOM_STATE = {
    "random": {"seed", "getstate", "setstate"},
    "numpy.random": {"seed", "get_state", "set_state"},
    "torch": {"manual_seed", "seed", "get_rng_state", "set_rng_state"},
    "torch.random": {"manual_seed", "seed", "get_rng_state", "set_rng_state", "fork_rng"},
    "torch.cuda": {"manual_seed", "manual_seed_all", "seed", "seed_all", "get_rng_state", "set_rng_state"},
}
"""Module -> its functions that seed, read or set a global random stream."""


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``"name (N lines, line L)"`` for every function or method of ``source`` longer than ``limit`` lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append(f"{node.name} ({length} lines, line {node.lineno})")
    return found


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """``a.b.c`` for a chain of attribute accesses on a name, the name resolved through ``aliases``."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return None if base is None else f"{base}.{node.attr}"
    return None


def random_state_uses(source: str) -> list[str]:
    """The global-random-state functions of :data:`GLOBAL_RANDOM_STATE` that ``source`` calls or imports."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({alias.asname or alias.name: alias.name for alias in node.names if alias.asname})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name in GLOBAL_RANDOM_STATE.get(node.module, ()):
                    found.append(f"{node.module}.{alias.name} (imported, line {node.lineno})")
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (name := _dotted(node.func, aliases)):
            module, _, function = name.rpartition(".")
            if function in GLOBAL_RANDOM_STATE.get(module, ()):
                found.append(f"{name} (line {node.lineno})")
    return found


def test_no_function_under_training_is_longer_than_60_lines():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}: {function}"
        for path in sorted((PACKAGE / "training").rglob("*.py"))
        for function in long_functions(path.read_text())
    ]
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): {offenders}"


def test_only_the_seeding_module_touches_the_global_random_streams():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}: {use}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != SEEDING
        for use in random_state_uses(path.read_text())
    ]
    assert not offenders, f"global random state outside contrastive_seq/seeding.py (call its functions): {offenders}"
    assert random_state_uses(SEEDING.read_text()), "the seeding module itself was not recognised: the check is blind"


def test_the_checks_find_what_they_look_for():
    def function(lines: int) -> str:
        return "def f():\n" + "    x = 0\n" * (lines - 1)

    assert long_functions(function(MAX_FUNCTION_LINES)) == []
    method = "class A:\n" + textwrap.indent(function(MAX_FUNCTION_LINES + 1), "    ")
    assert long_functions(method) == [f"f ({MAX_FUNCTION_LINES + 1} lines, line 2)"]
    source = (
        "import numpy as np\nimport torch\nfrom torch.random import fork_rng\nfrom random import seed as s\n"
        "torch.Generator().manual_seed(1)\nnp.random.default_rng(0)\n"
        "np.random.seed(0)\ntorch.cuda.set_rng_state(x)\ns(3)\n"
    )
    assert random_state_uses(source) == [
        "torch.random.fork_rng (imported, line 3)",
        "random.seed (imported, line 4)",
        "numpy.random.seed (line 7)",
        "torch.cuda.set_rng_state (line 8)",
        "random.seed (line 9)",
    ]
