"""The package's layering (docs/architecture.md, "Layers"): every import of a mas_credit
module, function-level ones included, goes to the same layer or one above, and the
modules form no import circle (a package's own registration pattern aside: a submodule
importing its package's __init__ to register itself); and nothing else is imported inside a
function but the lazy backends."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mas_credit"
LAYERS = [
    ["mas_credit.types", "mas_credit.coalitions"],
    ["mas_credit.plugins", "mas_credit.outputs"],
    ["mas_credit.games", "mas_credit.estimators"],
    ["mas_credit.agents"],
    ["mas_credit.rollout", "mas_credit.counterfactual", "mas_credit.edges"],
    ["mas_credit.config"],
    ["mas_credit.report", "mas_credit.checklist", "mas_credit.studies", "mas_credit.train", "mas_credit.batch"],
    ["mas_credit.cli"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for k, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return k
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py (and docs/architecture.md)")


def imports() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mas_credit"):
                found.add(node.module)
                found.update(
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if (ROOT.parent / node.module.replace(".", "/") / f"{a.name}.py").exists()
                )
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("mas_credit"))
        graph[module_name(path)] = found
    return graph


def test_every_import_goes_to_the_same_layer_or_above():
    bad = [
        (m, t) for m, targets in imports().items() for t in targets if t != "mas_credit" and layer_of(t) > layer_of(m)
    ]
    assert not bad, f"imports from a lower layer: {bad}"


def test_no_import_circles():
    graph = imports()
    edges = {
        m: {
            t
            for t in targets
            if t in graph
            and t != m
            and not (m.startswith(t + ".") and (ROOT.parent / t.replace(".", "/") / "__init__.py").exists())
        }
        for m, targets in graph.items()
    }
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(t) :] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)


LAZY = ("transformers", "peft", "vllm", "ray", "huggingface_hub", "torch.utils.tensorboard", "matplotlib", "openai")
"""what may be imported inside a function: optional or heavy backends, and matplotlib (choosing its backend is a
side effect only drawing should have); `cli` imports each verb's modules when the verb runs (start-up time)"""


def test_function_level_imports_are_only_the_lazy_backends():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        if module_name(path) == "mas_credit.cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    names = [sub.module] if isinstance(sub, ast.ImportFrom) else []
                    names += [a.name for a in sub.names] if isinstance(sub, ast.Import) else []
                    bad += [f"{module_name(path)}:{sub.lineno} {n}" for n in names if not n.startswith(LAZY)]
    assert not bad, f"function-level imports of modules that can be imported at the top: {bad}"
