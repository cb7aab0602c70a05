"""The package's import directions: every dependency points down the pipeline.

Read from the source with ``ast`` (imports inside functions count too), so a
lazy import that climbs a layer fails here instead of hiding until it runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mvdecor

PACKAGE = Path(mvdecor.__file__).parent

#: Bottom to top. A module may import its own sub-package and anything in a lower
#: layer; nothing in its own layer but itself (siblings stay independent), nothing above.
#: ``viz`` sits below ``train`` because training runs draw their curves and report; ``points``
#: (the 3D point-cloud baselines) sits above ``train`` so it can share its engine and logs.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors"}),
    frozenset({"config", "fileio", "palette", "presets", "registry"}),
    frozenset({"data"}),
    frozenset({"render"}),
    frozenset({"correspond"}),
    frozenset({"models"}),
    frozenset({"inference", "evaluation"}),
    frozenset({"viz"}),
    frozenset({"train"}),
    frozenset({"points"}),
    frozenset({"protocols"}),
    frozenset({"demo"}),
    frozenset({"app"}),
    frozenset({"cli"}),
)
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}
#: The package's own ``__init__`` / ``__main__`` (re-exports, the entry point) are exempt.
EXEMPT = {"__init__", "__main__"}


def _top(module: str) -> str:
    """``mvdecor.render.store`` -> ``render``; ``mvdecor.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _is_submodule(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every ``mvdecor.*`` module imported anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mvdecor."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("mvdecor."):
                found.add(node.module)
            elif node.module == "mvdecor":  # submodules only; `from mvdecor import __version__` is no layer
                found.update(f"mvdecor.{a.name}" for a in node.names if _is_submodule(a.name))
    return found


def _edges() -> list[tuple[str, str, str]]:
    """``(importing module, its layer, imported layer)`` for imports across top-level parts."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        source = _top(module)
        for imported in _imports(path):
            target = _top(imported)
            if target != source:
                edges.append((module, source, target))
    return edges


def test_every_part_of_the_package_has_a_layer():
    parts = {_top(_module_name(p)) for p in PACKAGE.rglob("*.py")} - EXEMPT
    assert parts <= set(RANK), f"give these a layer in LAYERS: {sorted(parts - set(RANK))}"


def test_imports_point_down_the_pipeline():
    upward = [
        f"{module} imports mvdecor.{target}"
        for module, source, target in _edges()
        if source not in EXEMPT and (target not in RANK or RANK[target] >= RANK[source])
    ]
    assert not upward, "\n".join(upward)


def test_configuration_is_a_leaf():
    for path in (PACKAGE / "config").glob("*.py"):
        allowed = {
            "mvdecor.errors",
            "mvdecor.config.checks",
            "mvdecor.config.sections",
            "mvdecor.config.inference",
            "mvdecor.config.points",
        }
        assert _imports(path) <= allowed, path.name


def test_lower_layers_never_import_training_pictures_protocols_demo_or_cli():
    upper = {"train", "viz", "protocols", "demo", "cli"}
    lower = {"data", "render", "correspond", "models", "inference", "evaluation"}
    bad = [f"{m} imports mvdecor.{t}" for m, s, t in _edges() if s in lower and t in upper]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_lazy_and_upward_imports(tmp_path):
    # The checks above can fail: an import inside a function that climbs a layer is found.
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from mvdecor.train.pretrain import pretrain\n    import mvdecor.cli\n")
    assert _imports(module) == {"mvdecor.train.pretrain", "mvdecor.cli"}
    assert RANK["train"] > RANK["inference"] and RANK["cli"] > RANK["train"]
