"""The package's shape: no import cycles, small modules, thin CLI, cheap no-op imports.

The import graph is read with `ast` from the source (module-level and function-level imports
alike: a lazy import is still a dependency), at the granularity of modules.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "s2build"
MAX_LINES = 400

# Names that cli modules must not call or define: training, data parsing, attribution, export.
DOMAIN_IMPORTS = ("torch", "numpy", "onnx", "onnxruntime")


def modules():
    """{dotted module name: path} for every module of the package."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name, path, known):
    """Package modules that module `name` imports (resolving relative imports)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - (node.level - 1)]
                mod = ".".join(parent + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            for a in node.names:
                found.add(f"{mod}.{a.name}")
    out = set()
    for f in found:
        if f in known and f != name:
            out.add(f)
    # a package's __init__ is not a dependency when a submodule of it is imported
    return {m for m in out if not any(o.startswith(m + ".") for o in out)} | \
        {m for m in out if known[m].name != "__init__.py"}


def import_graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycle(graph):
    """One import cycle as a list of module names, or None."""
    state = {}
    stack = []

    def visit(n):
        state[n] = "active"
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "active":
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = "done"
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_modules_are_small():
    big = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_the_package_is_organised_in_subpackages():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "atomic.py", "errors.py"], top
    subs = sorted(p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__")
    for sub in subs:
        assert (PKG / sub / "__init__.py").is_file(), sub
        doc = ast.get_docstring(ast.parse((PKG / sub / "__init__.py").read_text()))
        assert doc, f"s2build/{sub}/__init__.py has no docstring"


def test_cli_modules_hold_no_domain_logic():
    """cli/ parses arguments and prints: it imports no torch, numpy or onnx, even lazily."""
    for path in sorted((PKG / "cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            for n in names:
                assert n.split(".")[0] not in DOMAIN_IMPORTS, f"{path.name} imports {n}"


def test_readme_layout_names_every_module():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[: layout.index("\n## ", 4)] if "\n## " in layout[4:] else layout
    missing = []
    for name, path in modules().items():
        if path.name in ("__init__.py", "__main__.py") or name == "s2build":
            continue
        short = name.split(".", 1)[1]            # e.g. engine.plan
        sub, _, mod = short.rpartition(".")
        ok = (f"`{short}`" in layout) or (sub and f"`{sub}/`" in layout and f"`{mod}`" in layout)
        if not ok:
            missing.append(short)
    assert not missing, f"README's Layout section does not name: {missing}"


def test_noop_path_imports_no_heavy_library():
    code = ("import sys\n"
            "import s2build.cli.main, s2build.engine.runner, s2build.project.config, "
            "s2build.engine.explain, s2build.engine.state, s2build.store.local\n"
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "[]"
