"""Imports flow one way: data -> models -> experiments -> pipeline, cli; no import cycles.

Read from the source (every ``import``, lazy ones inside functions included), so a cycle that
only a deferred import keeps from failing at import time is still caught.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hmm_lang"

# lowest layer first; a module may import its own layer and those below it. Every module of
# the package has a layer (a new one must be placed here).
LAYERS = {
    "base": {"errors", "atomic", "records", "memory", "config", "estimate"},
    "data": {
        *("corpus", "sources", "synthetic", "synthetic_words", "tokenizer", "pretokenize"),
        *("stats", "devsplit", "datasize"),
    },
    "models": {"hmm", "ngram", "ngram_counts", "transformer", "estimator", "scoring", "runs"},
    "experiments": {"experiments", "analysis", "plots"},
    "entry points": {
        *("pipeline", "profiles", "stages", "stage_runner", "report", "cli", "dryrun"),
        *("dryrun_table", "notebook", "apidoc"),
    },
}


def _import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports. Importing ``a.b.c`` also runs the
    ``__init__`` of ``a.b`` (some import eagerly), so that counts as an import of ``a.b`` too."""
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in mods:
                subs = [f"{node.module}.{a.name}" for a in node.names]
                found = [s for s in subs if s in mods]
                graph[m].update(found if len(found) == len(subs) else [node.module, *found])
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods)
        for t in list(graph[m]):  # the parent packages' __init__, unless m lives inside them
            parts = t.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in mods and not m.startswith(parent + "."):
                    graph[m].add(parent)
        graph[m].discard(m)
    return graph


def _reaches(graph: dict[str, set[str]], a: str, b: str) -> bool:
    seen, todo = set(), [a]
    while todo:
        for n in graph[todo.pop()] - seen:
            if n == b:
                return True
            seen.add(n)
            todo.append(n)
    return False


def test_no_import_cycles():
    graph = _import_graph()
    assert len(graph) > 80  # read the whole package
    assert sorted((a, b) for a in graph for b in graph[a] if _reaches(graph, b, a)) == []


def _layer(module: str) -> int | None:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else None
    return next((i for i, names in enumerate(LAYERS.values()) if top in names), None)


def test_every_module_has_a_layer():
    assert [m for m in _import_graph() if m != "hmm_lang" and _layer(m) is None] == []


def test_imports_flow_from_data_to_models_to_experiments_to_entry_points():
    order = list(LAYERS)
    upward = [
        f"{m} ({order[_layer(m)]}) imports {t} ({order[_layer(t)]})"
        for m, targets in _import_graph().items()
        for t in targets
        if t != "hmm_lang" and _layer(m) is not None and _layer(t) > _layer(m)
    ]
    assert upward == []
