"""The package's layers: a module imports only from its own layer or the ones below, at the
top of the file, and no import cycle. The table below is the one home of the layer order (the
guide's docs/code-layout.md describes it)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jaxmlp"

# Bottom to top. A name stands for a module or a package (all its modules); a package's `cli`
# and `__main__` modules are commands, the top layer, whatever package they sit in.
LAYERS = (
    ("foundation", ("jaxmlp", "jaxmlp.config", "jaxmlp.cli", "jaxmlp.checkpoint",
                    "jaxmlp.stats", "jaxmlp.numpy_mlp", "jaxmlp.versions", "jaxmlp.data",
                    "jaxmlp.compilation", "jaxmlp.faults", "jaxmlp.stopping", "jaxmlp.sizes",
                    "jaxmlp.floor")),
    ("maths", ("jaxmlp.pick", "jaxmlp.model", "jaxmlp.fast", "jaxmlp.losses", "jaxmlp.optim")),
    ("loop", ("jaxmlp.loop",)),
    ("measurements", ("jaxmlp.probes", "jaxmlp.overfit", "jaxmlp.gradcheck", "jaxmlp.reference")),
    ("rows, words, folder", ("jaxmlp.diagnostics", "jaxmlp.report", "jaxmlp.rundir")),
    ("pictures", ("jaxmlp.plots",)),
    ("sweeps", ("jaxmlp.sweep",)),
    ("one run", ("jaxmlp.programs", "jaxmlp.runner", "jaxmlp.overfit_run")),
    ("pages", ("jaxmlp.pages",)),
    ("notes", ("jaxmlp.notes",)),
    ("lab", ("jaxmlp.lab",)),
    ("commands", ("jaxmlp.train",)),
)
COMMANDS = len(LAYERS) - 1


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer(module: str) -> int:
    if module.rsplit(".", 1)[-1] in ("cli", "__main__") and module != "jaxmlp.cli":
        return COMMANDS
    best = max((name for _, names in LAYERS for name in names
                if module == name or module.startswith(name + ".")), key=len)
    return next(i for i, (_, names) in enumerate(LAYERS) if best in names)


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported jaxmlp module, imported inside a function) for every import in `path`."""
    tree = ast.parse(path.read_text())
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
              for n in ast.walk(f)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.append((name, id(node) in inside))
    return found


def test_every_module_has_a_layer() -> None:
    for module in modules():
        assert 0 <= layer(module) < len(LAYERS), module


def test_imports_run_one_way_at_the_top_of_the_file() -> None:
    known = modules()
    upward, late = [], []
    for module, path in known.items():
        for target, in_function in imports(module, path, known):
            if layer(target) > layer(module):
                upward.append(f"{module} ({LAYERS[layer(module)][0]}) imports {target} "
                              f"({LAYERS[layer(target)][0]})")
            if in_function:
                late.append(f"{module} imports {target} inside a function")
    assert not upward, "\n".join(sorted(set(upward)))
    assert not late, "\n".join(sorted(set(late)))


def test_no_import_cycle() -> None:
    known = modules()
    graph = {m: {t for t, _ in imports(m, p, known)} for m, p in known.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            assert state.get(t) != 1, "import cycle: " + " -> ".join([*path, m, t])
            if t not in state:
                visit(t, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_shuffle_has_one_home() -> None:
    """Every epoch's batches come from `loop.epoch_order`: no second copy of the shuffle (a
    permutation drawn, or random bits sorted, anywhere else)."""
    shuffles = ("jax.random.permutation(", "jax.random.shuffle(", "jax.lax.sort(",
                "jnp.argsort(")
    homes = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             for pattern in shuffles for _ in range(p.read_text().count(pattern))]
    assert homes == ["loop.py"], homes
