"""Dependencies point one way (docs/architecture.md): a backward edge or a cycle fails this test."""

import ast
from pathlib import Path

import eoslab

ROOT = Path(eoslab.__file__).parent

# rank of each room; a module may import rooms of strictly lower rank, or its own room
RANK = {
    "params": 0,
    "_yaml": 0,
    "_version": 0,
    "fits": 0,
    "data": 1,
    "models": 1,
    "losses": 1,
    "problem": 2,
    "linalg": 3,
    "eigen": 4,
    "dynamics": 5,
    "probes": 5,
    "store": 6,
    "run": 7,
    "plots": 7,
    "report": 8,
    "cli": 9,
    "__main__": 10,
    "__init__": 10,
}
# plots read stored results only: no torch model code
ONLY = {"plots": {"store", "plots", "fits"}}


def room_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def eoslab_imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "eoslab" and "." in node.module:
                yield node.module.split(".")[1], node.lineno
            elif node.module == "eoslab":  # ``from eoslab import x``: the package root
                yield "__init__", node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "eoslab" and len(parts) > 1:
                    yield parts[1], node.lineno


def test_every_room_is_known():
    rooms = {room_of(p) for p in ROOT.rglob("*.py")}
    assert rooms <= set(RANK), f"rooms missing from the dependency map: {rooms - set(RANK)}"


def test_dependencies_point_one_way():
    bad = []
    for path in ROOT.rglob("*.py"):
        src = room_of(path)
        for dst, line in eoslab_imports(path):
            if dst == src:
                continue
            if src in ONLY and dst not in ONLY[src]:
                bad.append(f"{path.relative_to(ROOT)}:{line} {src} -> {dst}")
            elif RANK.get(dst, 99) >= RANK[src]:
                bad.append(f"{path.relative_to(ROOT)}:{line} {src} -> {dst}")
    assert not bad, "backward or sideways imports:\n" + "\n".join(bad)
