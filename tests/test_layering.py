"""The layering rules, read from the source with ``ast`` (no import-linter needed).

* ``xaijax.core`` imports no other xaijax package;
* a method family imports ``xaijax.core`` (and what its line below adds), never another family;
* ``metrics`` and ``plots`` read Explanations: they import ``core`` only, no family;
* no module imports a private ``_name`` (or a private ``_module``) from another xaijax module:
  a name two modules need is made public (in ``core`` when two families need it).

Every import counts, including those inside functions (a lazy import still couples the
packages). A new family joins by adding its line to :data:`MAY_IMPORT`.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CORE = ("xaijax.core",)
# package -> the other xaijax packages its modules may import (their own package always).
MAY_IMPORT = {
    "xaijax.core": (),
    "xaijax.shapley": CORE,
    "xaijax.lime": CORE,
    "xaijax.gradients": CORE,
    "xaijax.cam": CORE,
    "xaijax.perturbation": CORE,
    "xaijax.propagation": CORE,
    "xaijax.transformers": CORE,
    "xaijax.trees": CORE,
    "xaijax.protopnet": CORE + ("xaijax.zoo",),
    "xaijax.metrics": CORE,
    "xaijax.plots": CORE,
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str, root: Path) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def imports(path: Path, root: Path):
    """``(line, target module, imported names, bound module aliases)`` for each import."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = {alias.asname: alias.name} if alias.asname else {}
                yield node.lineno, alias.name, (), bound
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names = [a.name for a in node.names]
            # ``from xaijax import lime`` imports the module xaijax.lime; ``from xaijax import
            # Explanation`` imports the package root (which imports every family).
            submodules = [f"{source}.{n}" for n in names if is_module(f"{source}.{n}", root)]
            others = tuple(n for n in names if not is_module(f"{source}.{n}", root))
            bound = {
                (a.asname or a.name): f"{source}.{a.name}"
                for a in node.names
                if is_module(f"{source}.{a.name}", root)
            }
            for sub in submodules:
                yield node.lineno, sub, (), bound
            if others or not submodules:
                yield node.lineno, source, others, bound


def modules(root: Path):
    for path in sorted((root / "xaijax").rglob("*.py")):
        yield path, module_name(path, root)


def owner(name: str) -> str | None:
    matches = [p for p in MAY_IMPORT if within(name, p)]
    return max(matches, key=len) if matches else None


def layering_violations(root: Path, package: str) -> list[str]:
    found = []
    for path, me in modules(root):
        if owner(me) != package:
            continue
        for line, target, _, _ in imports(path, root):
            if not within(target, "xaijax") or within(target, package):
                continue
            if any(within(target, allowed) for allowed in MAY_IMPORT[package]):
                continue
            what = " (the package root, which imports every family)" if target == "xaijax" else ""
            found.append(f"{path.relative_to(root)}:{line} imports {target}{what}")
    return found


def private_violations(root: Path) -> list[str]:
    found = []
    for path, me in modules(root):
        aliases = {}
        for line, target, names, bound in imports(path, root):
            aliases.update(bound)
            if not within(target, "xaijax") or target == me:
                continue
            where = f"{path.relative_to(root)}:{line}"
            parts = target.split(".")
            for i, part in enumerate(parts):
                # A private module is private to its package.
                if is_private(part) and not within(me, ".".join(parts[:i])):
                    found.append(f"{where} imports the private module {target}")
            found += [f"{where} imports {target}.{n}" for n in names if is_private(n)]
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and aliases[node.value.id] != me
                and is_private(node.attr)
            ):
                where = f"{path.relative_to(root)}:{node.lineno}"
                found.append(f"{where} uses {aliases[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("package", list(MAY_IMPORT))
def test_layering(package):
    assert any(owner(me) == package for _, me in modules(ROOT)), f"no modules in {package}"
    found = layering_violations(ROOT, package)
    allowed = ", ".join(MAY_IMPORT[package]) or "no other xaijax package"
    assert not found, f"{package} may import {allowed}; found:\n" + "\n".join(found)


def test_no_private_names_across_modules():
    found = private_violations(ROOT)
    assert not found, "private names imported from other modules:\n" + "\n".join(found)


def test_the_checker_finds_each_kind_of_violation(tmp_path):
    files = {
        "xaijax/__init__.py": "from xaijax.lime import explain\n",
        "xaijax/core/__init__.py": "",
        "xaijax/core/model.py": "import xaijax\n\ndef _helper(): ...\n",
        "xaijax/core/_impl.py": "",
        "xaijax/core/batching.py": "from xaijax.core import _impl\nfrom . import model\n",
        "xaijax/shapley/__init__.py": "",
        "xaijax/shapley/kernel.py": (
            "from xaijax.core.model import _helper\n"
            "from xaijax.core import model as m\n"
            "def f():\n    from xaijax.lime.tabular import explain\n    return m._helper\n"
        ),
        "xaijax/lime/__init__.py": "from .tabular import explain\n",
        "xaijax/lime/tabular.py": (
            "from xaijax.core._impl import x\nfrom ..shapley import kernel\n"
            "from xaijax import metrics\n"
        ),
        "xaijax/metrics.py": "from xaijax import Explanation\n",
        "xaijax/plots.py": "from xaijax.core.model import as_model\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert layering_violations(tmp_path, "xaijax.core") == [
        "xaijax/core/model.py:1 imports xaijax (the package root, which imports every family)"
    ]
    assert layering_violations(tmp_path, "xaijax.shapley") == [
        "xaijax/shapley/kernel.py:4 imports xaijax.lime.tabular"
    ]
    assert layering_violations(tmp_path, "xaijax.lime") == [
        "xaijax/lime/tabular.py:2 imports xaijax.shapley.kernel",
        "xaijax/lime/tabular.py:3 imports xaijax.metrics",
    ]
    assert layering_violations(tmp_path, "xaijax.metrics") == [
        "xaijax/metrics.py:1 imports xaijax (the package root, which imports every family)"
    ]
    assert layering_violations(tmp_path, "xaijax.plots") == []
    assert sorted(private_violations(tmp_path)) == [
        "xaijax/lime/tabular.py:1 imports the private module xaijax.core._impl",
        "xaijax/shapley/kernel.py:1 imports xaijax.core.model._helper",
        "xaijax/shapley/kernel.py:5 uses xaijax.core.model._helper",
    ]
