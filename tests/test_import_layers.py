"""The package's imports form no cycle and point down the layers of the design (data → ... → interfaces).

The imports are read from the source with :mod:`ast` (nothing is imported),
including imports inside functions, so a cycle hidden by a deferred import
is found too; imports under ``if TYPE_CHECKING:`` are left out.
"""

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "contrastive_seq"

# The layers of DESIGN.md, bottom first; a module may import its own layer and those below.
LAYERS = ("data", "sampling", "views", "models", "losses", "methods", "training", "evaluation", "interfaces")
# Top-level helpers every layer may use (the bottom of the stack).
FOUNDATION = {
    "contrastive_seq",
    "contrastive_seq.atomic_files",
    "contrastive_seq.lazy",
    "contrastive_seq.distributed",
    "contrastive_seq.memory",
    "contrastive_seq.seeding",
    "contrastive_seq.user_warnings",
}
# Top-level modules of the interfaces layer (the sub-packages take the layer of their folder).
INTERFACES = {"estimator", "cebra_api", "cli", "command_files", "config", "plotting", "experiments", "export", "__main__"}

# Imports that run up the layers today, in modules owned by other work; each is to be moved, not copied.
KNOWN_UPWARD = {
    # GradientCache sits in training/ though only the CLIP method uses it (issue 13: it moves to methods/ or models/)
    ("contrastive_seq.methods.clip", "contrastive_seq.training.gradient_cache"),
    # the image-text views tokenise with the text tower's tokenizer type (to move below views, or the type to a protocol)
    ("contrastive_seq.views.image_text", "contrastive_seq.models.clip_towers"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    """Index of ``module``'s layer in :data:`LAYERS`; ``None`` for the foundation."""
    if module in FOUNDATION:
        return None
    top = module.split(".")[1]
    if top in INTERFACES:
        return LAYERS.index("interfaces")
    if top in LAYERS:
        return LAYERS.index(top)
    raise AssertionError(f"{module} belongs to no layer of DESIGN.md: add its folder to LAYERS or FOUNDATION")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(source: str, package: str, modules: set[str]) -> set[str]:
    """The ``modules`` that ``source`` (a module of ``package``) imports; ``from a import b`` counts ``a.b``
    when that is a module."""
    found = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return {name for name in found if name in modules}


@functools.cache
def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    graph = {}
    for path in paths:
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imported_modules(path.read_text(encoding="utf-8"), package, modules) - {name}
    return graph


def _without_parent_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop edges from a module to a package above it (``from contrastive_seq import distributed`` names the
    package only as the place of ``distributed``); the package's own imports stay."""
    return {
        module: {target for target in targets if not module.startswith(target + ".")} for module, targets in graph.items()
    }


def test_the_walker_sees_deferred_and_relative_imports_and_skips_type_checking():
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import contrastive_seq.cli\n"
        "def f():\n    from contrastive_seq.losses import tiled\n    from .terms import x\n"
    )
    modules = {"contrastive_seq.cli", "contrastive_seq.losses", "contrastive_seq.losses.tiled", "contrastive_seq.losses.terms"}
    assert imported_modules(source, "contrastive_seq.losses", modules) == modules - {"contrastive_seq.cli"}


def test_no_import_cycle():
    graph = _without_parent_packages(import_graph())
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in import_graph().items():
        here = layer(module)
        for target in sorted(targets):
            there = layer(target)
            if here is not None and there is not None and there > here and (module, target) not in KNOWN_UPWARD:
                upward.append(f"{module} ({LAYERS[here]}) imports {target} ({LAYERS[there]})")
            if here is None and there is not None and module != "contrastive_seq":
                upward.append(f"{module} (foundation) imports {target} ({LAYERS[there]})")
    assert not upward, "imports up the layers of DESIGN.md:\n" + "\n".join(upward)


def test_known_upward_imports_still_exist():
    """An entry of the allow-list that no longer occurs must be removed, so the list only shrinks."""
    graph = import_graph()
    stale = [pair for pair in KNOWN_UPWARD if pair[1] not in graph.get(pair[0], set())]
    assert not stale, f"remove these from KNOWN_UPWARD: {stale}"
