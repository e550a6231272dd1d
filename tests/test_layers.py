"""The layering of the source tree, read with ``ast``: which of our packages may import which, where the heavy
recording readers may be imported, and how big a module may grow.

One checker (``check_tree``) reads a tree laid out like the repository (schemas/, vla_data/, vla_model/,
pipelines/, client/vla_client/) and returns its violations; the tests run it on the real tree and on small planted
trees in ``tmp_path`` that each break one rule, so that every rule is shown to fail.

Imports count wherever they are: at module level, inside a function (a lazy import), under ``if
TYPE_CHECKING:``, and as ``importlib.import_module("literal")``. Relative imports are resolved.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A layer (a package, or a stage package of vla_data) -> the layers of ours it may import (besides itself).
ANYTHING = None
LAYERS: dict[str, frozenset[str] | None] = {
    # the data contracts: every layer reads them, so they import nothing of ours
    "schemas": frozenset(),
    # the robot side ships alone (client/pyproject.toml, torch-free): nothing of ours
    "vla_client": frozenset(),
    # the package's __init__: __version__, and WindowDataset / make_loader loaded by name on first use
    "vla_data": frozenset({"vla_data.samples"}),
    # what every stage shares (files, pools, refusals, resizing): only the contracts below it
    # (and the robot client's preprocessing: the one resize rule, which the robot runs without vla-data)
    "vla_data.common": frozenset({"schemas", "vla_client"}),
    # reading recordings (HDF5, ROS 2 bags); bag images are decoded by the client's ROS message conversions
    "vla_data.sources": frozenset({"schemas", "vla_data.common", "vla_client"}),
    # checking recordings: reads them through sources
    "vla_data.validation": frozenset({"schemas", "vla_data.common", "vla_data.sources"}),
    # the zarr store: its shards are filled from the recordings that sources read
    "vla_data.store": frozenset({"schemas", "vla_data.common", "vla_data.sources"}),
    # building a store: validates the recordings, reads them, writes the store
    "vla_data.build": frozenset({"schemas", "vla_data.common", "vla_data.sources", "vla_data.validation",
                                 "vla_data.store"}),
    # training samples: windows read from a built store only, never from the recordings
    "vla_data.samples": frozenset({"schemas", "vla_data.common", "vla_data.store"}),
    # a store version written in another tool's format (LeRobot's): read from a built store only
    "vla_data.lerobot": frozenset({"schemas", "vla_data.common", "vla_data.sources", "vla_data.store"}),
    # synthetic recordings: written in the formats sources reads
    "vla_data.synthetic": frozenset({"schemas", "vla_data.common", "vla_data.sources"}),
    # the policy: trains on samples from a store, never on recordings or the build
    # (and the robot side's frame expectations, so that predict and the robot check frames by one rule)
    "vla_model": frozenset({"schemas", "vla_data.common", "vla_data.samples", "vla_data.store", "vla_client"}),
    # the commands: they put everything together
    "pipelines": ANYTHING,
}
# `vla_data` itself may be imported by anyone for its version: `import vla_data`, `from vla_data import __version__`
FACADE, FACADE_NAMES = "vla_data", {"__version__"}
# third-party packages that only these layers may import (tests and benchmarks are not checked)
RESTRICTED = {
    "h5py": {"vla_data.sources", "vla_data.validation", "vla_data.synthetic"},
    "rosbags": {"vla_data.sources", "vla_data.validation", "vla_data.synthetic"},
}
# where our packages lie in a tree: import name -> folder
PACKAGE_DIRS = {"schemas": "schemas", "vla_data": "vla_data", "vla_model": "vla_model", "pipelines": "pipelines",
                "vla_client": "client/vla_client"}
MAX_LINES, MAX_CLI_LINES = 400, 300
SIZED = ("vla_data", "vla_model", "pipelines")  # the folders whose modules must stay under MAX_LINES
CLI = "pipelines.cli"  # pipelines/cli.py, or every module of a pipelines/cli/ package


def layer_of(module: str) -> str | None:
    """The longest layer name that is ``module`` or a package above it."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    return None


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    """(dotted module name, is a package __init__) of a file under one of PACKAGE_DIRS."""
    for top, folder in PACKAGE_DIRS.items():
        base = root / folder
        if path.is_relative_to(base):
            parts = [top, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                return ".".join(parts[:-1]), True
            return ".".join(parts), False
    raise ValueError(path)


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str, str]]:
    """(line, imported module, name imported from it or "") for each import in a module."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found += [(node.lineno, base, alias.name) for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id == "import_module")
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            found.append((node.lineno, node.args[0].value, ""))
    return found


def _files(root: Path) -> list[Path]:
    return sorted(p for folder in PACKAGE_DIRS.values() if (root / folder).is_dir()
                  for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)


def check_tree(root: Path) -> list[str]:
    """Every violation of the rules in a tree, one line each, starting with the rule's name."""
    problems = []
    for path in _files(root):
        rel = path.relative_to(root).as_posix()
        module, is_package = _module_name(root, path)
        source = path.read_text()
        mine = layer_of(module)
        if mine is None:
            problems.append(f"layers: {rel}: module {module} belongs to no layer")
            continue
        allowed = LAYERS[mine]
        for line, target, name in _imported(ast.parse(source, filename=rel), module, is_package):
            top = target.split(".")[0]
            if top in RESTRICTED and mine not in RESTRICTED[top]:
                problems.append(f"restricted: {rel}:{line}: {mine} imports {top}, which only "
                                f"{', '.join(sorted(RESTRICTED[top]))} may import")
            if top not in PACKAGE_DIRS:
                continue
            # `from vla_data.store import reader` imports vla_data.store.reader: the name may be a module
            full = f"{target}.{name}" if name and name != "*" else target
            theirs = layer_of(full)
            if theirs == FACADE and (not name or name in FACADE_NAMES):
                continue  # `import vla_data`, `from vla_data import __version__`
            if theirs is None or theirs == mine or allowed is ANYTHING:
                continue
            if theirs not in allowed:
                what = f"{target} ({name})" if name else target
                problems.append(f"layers: {rel}:{line}: {mine} imports {what} of {theirs}; {mine} may import only "
                                f"{', '.join(sorted(allowed)) or 'nothing of ours'}")
        if rel.split("/")[0] in SIZED:
            lines = len(source.splitlines())
            if module == CLI or module.startswith(CLI + "."):
                if lines > MAX_CLI_LINES:
                    problems.append(f"size: {rel}: {lines} lines, over {MAX_CLI_LINES} for a file of the CLI")
            elif lines > MAX_LINES:
                problems.append(f"size: {rel}: {lines} lines, over {MAX_LINES}")
    top_level = root / "vla_data"
    if top_level.is_dir():
        for entry in sorted(top_level.iterdir()):
            if entry.name == "__pycache__" or entry.name == "__init__.py":
                continue
            if entry.is_file() or not any(entry.rglob("*.py")):
                problems.append(f"top-level: vla_data/{entry.name}: vla_data/ holds only its stage packages and "
                                "__init__.py")
    return problems


def _only(rule: str, problems: list[str]) -> list[str]:
    return [p for p in problems if p.startswith(rule + ":")]


@pytest.fixture(scope="module")
def real() -> list[str]:
    return check_tree(ROOT)


@pytest.mark.parametrize("rule", ["layers", "restricted", "top-level", "size"])
def test_real_tree(real, rule):
    problems = _only(rule, real)
    assert not problems, f"{len(problems)} violation(s) of the {rule} rule:\n" + "\n".join(problems)


def test_rules_cover_the_tree(real):
    """Every rule's layers exist, so a renamed package cannot silently leave the table."""
    for layer in LAYERS:
        top, _, rest = layer.partition(".")
        assert (ROOT / PACKAGE_DIRS[top] / rest.replace(".", "/")).is_dir(), layer
    assert all(set(layers) <= LAYERS.keys() for layers in RESTRICTED.values())


# --- each rule fails on a planted violation -----------------------------------------------------------------

def _plant(root: Path, files: dict[str, str]) -> Path:
    base = {"schemas/__init__.py": "", "vla_data/__init__.py": "__version__ = '0'\n",
            "vla_data/common/__init__.py": "", "vla_data/store/__init__.py": "", "vla_data/samples/__init__.py": "",
            "vla_data/build/plan.py": "", "pipelines/__init__.py": "", "client/vla_client/ros.py": ""}
    for rel, text in {**base, **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_clean_planted_tree_passes(tmp_path):
    root = _plant(tmp_path, {
        "vla_data/samples/x.py": "from vla_data import __version__\nfrom vla_data.store import y\nimport numpy\n",
        "vla_data/store/y.py": "from ..common import z\n",
        "vla_data/common/z.py": "from schemas import s\n",
        "pipelines/cli.py": "from vla_data.build.plan import run\nimport vla_data\n" + "x = 1\n" * 298,
    })
    assert check_tree(root) == []


def test_planted_layer_violation(tmp_path):
    root = _plant(tmp_path, {"vla_data/samples/x.py": "import os\n\ndef f():\n    from vla_data.build import plan\n"})
    assert check_tree(root) == [
        "layers: vla_data/samples/x.py:4: vla_data.samples imports vla_data.build (plan) of vla_data.build; "
        "vla_data.samples may import only schemas, vla_data.common, vla_data.store"]


@pytest.mark.parametrize("source, line, what", [
    ("from vla_data.samples import loader\n", 1, "vla_data.samples (loader) of vla_data.samples"),
    ("from .. import samples\n", 1, "vla_data (samples) of vla_data.samples"),
    ("import importlib\nimportlib.import_module('vla_data.samples.loader')\n", 2,
     "vla_data.samples.loader of vla_data.samples"),
    ("from vla_data import WindowDataset\n", 1, "vla_data (WindowDataset) of vla_data"),
])
def test_planted_layer_violation_forms(tmp_path, source, line, what):
    """Relative imports, import_module and names from vla_data's __init__ other than __version__ count too."""
    root = _plant(tmp_path, {"vla_data/store/x.py": source})
    assert check_tree(root) == [f"layers: vla_data/store/x.py:{line}: vla_data.store imports {what}; "
                                "vla_data.store may import only schemas, vla_data.common, vla_data.sources"]


def test_planted_client_and_schemas_import_nothing_of_ours(tmp_path):
    root = _plant(tmp_path, {"client/vla_client/ros.py": "from schemas import x\n",
                             "schemas/m.py": "def f():\n    import vla_client.ros\n"})
    assert check_tree(root) == [
        "layers: client/vla_client/ros.py:1: vla_client imports schemas (x) of schemas; vla_client may import only "
        "nothing of ours",
        "layers: schemas/m.py:2: schemas imports vla_client.ros of vla_client; schemas may import only nothing of ours"]


def test_planted_restricted_import(tmp_path):
    root = _plant(tmp_path, {"vla_data/store/x.py": "def f():\n    import h5py.h5f\n",
                             "pipelines/y.py": "from rosbags.highlevel import AnyReader\n"})
    assert check_tree(root) == [
        "restricted: pipelines/y.py:1: pipelines imports rosbags, which only vla_data.sources, vla_data.synthetic, "
        "vla_data.validation may import",
        "restricted: vla_data/store/x.py:2: vla_data.store imports h5py, which only vla_data.sources, "
        "vla_data.synthetic, vla_data.validation may import"]


def test_planted_top_level_module(tmp_path):
    root = _plant(tmp_path, {"vla_data/loose.py": ""})
    assert check_tree(root) == [
        "top-level: vla_data/loose.py: vla_data/ holds only its stage packages and __init__.py"]


def test_planted_big_modules(tmp_path):
    root = _plant(tmp_path, {"vla_model/big.py": "x = 1\n" * 401, "vla_model/fits.py": "x = 1\n" * 400,
                             "pipelines/cli/__init__.py": "x = 1\n" * 301, "pipelines/cli/ok.py": "x = 1\n" * 300,
                             "schemas/long.py": "x = 1\n" * 900})
    assert check_tree(root) == [
        "size: pipelines/cli/__init__.py: 301 lines, over 300 for a file of the CLI",
        "size: vla_model/big.py: 401 lines, over 400"]


def started_directly(tests: Path) -> list[str]:
    """Calls of ``subprocess.Popen`` in test modules (conftest's ``start`` fixture is the one that may): a process
    started so is neither given SIGINT's default disposition nor killed when its test fails."""
    found = []
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Popen"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_every_test_process_is_started_by_the_start_fixture(tmp_path):
    assert started_directly(ROOT / "tests") == []
    (tmp_path / "test_x.py").write_text("import subprocess\n\ndef test_a():\n    subprocess.Popen(['true'])\n")
    assert started_directly(tmp_path) == ["test_x.py:4"]
