"""Each distribution declares what its modules import, so that `pip install .` (or `pip install ./client`) alone
gives working code.

Every module of a distribution is read with ``ast``; each top-level name it imports (at module level or inside
a function: a lazy import runs too) is mapped to the distribution that provides it here
(``importlib.metadata.packages_distributions()``), and that distribution must be among the requirements its
``pyproject.toml`` declares. The standard library and the distribution's own packages are left out.

The rule for optional extras:
- an import at module level, or inside a function but unguarded, must be a core requirement (``dependencies``):
  it runs whenever the module or the function is used, so an install without the extra would crash;
- an import inside a function *and* inside a ``try`` whose ``except`` catches ``ImportError`` (or
  ``ModuleNotFoundError``) may come from an optional extra other than ``dev`` (``s3``, ``dask``): the code
  says what to install, or falls back, when the extra is absent (``vla_data.common.pools._client``,
  ``vla_data.store.location._remote_errors``).
Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each distribution: its pyproject.toml and its own packages (import name -> source folder).
ROOT_PACKAGES = {
    "schemas": ROOT / "schemas",
    "vla_data": ROOT / "vla_data",
    "vla_model": ROOT / "vla_model",
    "pipelines": ROOT / "pipelines",
    "vla_client": ROOT / "client" / "vla_client",  # carried by the vla-data wheel too (package-dir)
}
CLIENT_PACKAGES = {"vla_client": ROOT / "client" / "vla_client"}
DEV_EXTRAS = {"dev"}  # extras for working on the project, never what the package's own code may rely on
# what a robot computer must not have to install (client/pyproject.toml's promise)
CLIENT_FORBIDDEN = {"torch", "transformers", "pydantic"}

IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing file, relative to the repository root
    line: int
    name: str  # the top-level import name ("yaml" for `import yaml.safe`)
    lazy: bool  # inside a function
    guarded: bool  # inside a `try` that catches ImportError

    @property
    def optional_ok(self) -> bool:
        return self.lazy and self.guarded


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        kinds = handler.type
        names = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
        if any(isinstance(n, ast.Name) and n.id in IMPORT_ERRORS for n in names):
            return True
    return False


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.found: list[Import] = []
        self.functions = 0
        self.guards = 0

    def _add(self, node: ast.AST, dotted: str) -> None:
        self.found.append(Import(self.module, node.lineno, dotted.split(".")[0], self.functions > 0, self.guards > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:  # a relative import is the package's own
            self._add(node, node.module)

    def _function(self, node: ast.AST) -> None:
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Try(self, node: ast.Try) -> None:
        guarded = _catches_import_error(node)
        self.guards += guarded
        for stmt in node.body:
            self.visit(stmt)
        self.guards -= guarded
        for stmt in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(stmt)

    visit_TryStar = visit_Try

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for stmt in node.orelse:
                self.visit(stmt)
            return
        self.generic_visit(node)


def imports_of(path: Path, root: Path = ROOT) -> list[Import]:
    visitor = _Imports(path.relative_to(root).as_posix())
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return visitor.found


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> tuple[str, set[str]]:
    """``"moto[server]==5.2.5"`` -> ("moto", {"server"})."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", spec)
    assert match, f"cannot read the requirement {spec!r}"
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return _normalize(match.group(1)), extras


def declared(pyproject: Path) -> tuple[set[str], dict[str, set[str]]]:
    """The normalized distribution names of ``dependencies``, and of each optional extra (a self-reference such
    as ``vla-data[s3,dask]`` in an extra is expanded)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    own = _normalize(project["name"])
    core = {_requirement_name(spec)[0] for spec in project.get("dependencies", [])}
    raw = project.get("optional-dependencies", {})

    def expand(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
        names: set[str] = set()
        for spec in raw[extra]:
            name, extras = _requirement_name(spec)
            if name == own:
                for inner in extras - seen - {extra}:
                    names |= expand(inner, seen | {extra})
            else:
                names.add(name)
        return names

    return core, {extra: expand(extra) for extra in raw}


def missing_requirements(packages: dict[str, Path], pyproject: Path, root: Path = ROOT,
                         providers: dict[str, list[str]] | None = None) -> list[str]:
    """One line per import that ``pyproject`` does not declare: the module and line, the import, the missing
    requirement."""
    providers = packages_distributions() if providers is None else providers
    core, extras = declared(pyproject)
    optional = {name: extra for extra, names in extras.items() if extra not in DEV_EXTRAS for name in names}
    problems = []
    for folder in packages.values():
        for path in sorted(folder.rglob("*.py")):
            for imp in imports_of(path, root):
                if imp.name in sys.stdlib_module_names or imp.name in packages or imp.name == "__future__":
                    continue
                where = f"{imp.module}:{imp.line}: `import {imp.name}`"
                dists = {_normalize(d) for d in providers.get(imp.name, [])}
                if not dists:
                    problems.append(f"{where}: no installed distribution provides it; declare it in "
                                    f"{pyproject.relative_to(root)}")
                    continue
                if dists & core:
                    continue
                if imp.optional_ok and dists & optional.keys():
                    continue
                need = " or ".join(sorted(dists))
                if dists & optional.keys():
                    extra = optional[sorted(dists & optional.keys())[0]]
                    problems.append(f"{where}: {need} is only in the [{extra}] extra of {pyproject.relative_to(root)}; "
                                    "an import at module level, or not guarded by `except ImportError` inside a "
                                    "function, needs it in `dependencies`")
                else:
                    also = " (or, being lazy and guarded, from a non-dev extra)" if imp.optional_ok else ""
                    problems.append(f"{where}: requirement {need} is missing from {pyproject.relative_to(root)}'s "
                                    f"`dependencies`{also}")
    return problems


def test_vla_data_declares_what_it_imports():
    problems = missing_requirements(ROOT_PACKAGES, ROOT / "pyproject.toml")
    assert not problems, "vla-data imports what it does not declare:\n" + "\n".join(problems)


def test_client_declares_what_it_imports():
    problems = missing_requirements(CLIENT_PACKAGES, ROOT / "client" / "pyproject.toml")
    assert not problems, "vla-data-client imports what it does not declare:\n" + "\n".join(problems)


def test_client_stays_torch_free():
    """Neither an import of the client's modules nor a requirement of client/pyproject.toml is torch,
    transformers or pydantic (a robot computer installs it)."""
    providers = packages_distributions()
    imported = {}
    for path in sorted(CLIENT_PACKAGES["vla_client"].rglob("*.py")):
        for imp in imports_of(path):
            for dist in [imp.name, *providers.get(imp.name, [])]:
                imported.setdefault(_normalize(dist), f"{imp.module}:{imp.line}: `import {imp.name}`")
    core, extras = declared(ROOT / "client" / "pyproject.toml")
    forbidden = {_normalize(name) for name in CLIENT_FORBIDDEN}
    bad = [imported[name] for name in sorted(forbidden & imported.keys())]
    bad += [f"client/pyproject.toml requires {name}" for name in sorted(forbidden & (core | set().union(*extras.values())))]
    assert not bad, "the robot client must not need torch, transformers or pydantic:\n" + "\n".join(bad)


def test_vla_data_wheel_carries_vla_client_and_every_package():
    """The packages setuptools puts in the vla-data wheel (its own reading of pyproject.toml): vla_client from
    client/vla_client, and every package folder of the source tree, none twice."""
    read_configuration = pytest.importorskip("setuptools.config.pyprojecttoml").read_configuration
    config = read_configuration(ROOT / "pyproject.toml", expand=True)["tool"]["setuptools"]
    packages, package_dir = config["packages"], config.get("package-dir", {})
    assert "vla_client" in packages, "the vla-data wheel must carry vla_client (vla_data and pipelines import it)"
    assert Path(package_dir.get("vla_client", "vla_client")) == Path("client/vla_client"), package_dir
    assert len(packages) == len(set(packages)), packages

    def folder_of(package: str) -> Path:
        top, *rest = package.split(".")
        return ROOT.joinpath(package_dir.get(top, top), *rest)

    assert all((folder_of(p)).is_dir() for p in packages), packages
    expected = set()
    for top, folder in ROOT_PACKAGES.items():
        for sub in [folder, *(d for d in folder.rglob("*") if d.is_dir())]:
            if sub.name != "__pycache__" and any(sub.glob("*.py")):
                expected.add(".".join([top, *sub.relative_to(folder).parts]))
    assert expected - set(packages) == set(), f"package folders the wheel would leave out: {expected - set(packages)}"


def test_missing_requirement_is_named(tmp_path):
    """The check itself: a planted `import yaml` in a client module, and a module-level import of an extra."""
    (tmp_path / "client" / "vla_client").mkdir(parents=True)
    (tmp_path / "client" / "vla_client" / "ros.py").write_text(
        "import numpy\n\ndef f():\n    import yaml\n")
    (tmp_path / "client" / "pyproject.toml").write_text(
        '[project]\nname = "c"\ndependencies = ["numpy>=1"]\n[project.optional-dependencies]\n'
        's3 = ["s3fs==1"]\ndev = ["pyyaml==6"]\n')
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "import s3fs\n\ndef g():\n    try:\n        import s3fs\n    except ImportError:\n        pass\n")
    providers = {"numpy": ["numpy"], "yaml": ["PyYAML"], "s3fs": ["s3fs"]}
    client = missing_requirements({"vla_client": tmp_path / "client" / "vla_client"},
                                  tmp_path / "client" / "pyproject.toml", tmp_path, providers)
    assert client == ["client/vla_client/ros.py:4: `import yaml`: requirement pyyaml is missing from "
                      "client/pyproject.toml's `dependencies`"]
    pkg = missing_requirements({"pkg": tmp_path / "pkg"}, tmp_path / "client" / "pyproject.toml", tmp_path, providers)
    assert len(pkg) == 1 and pkg[0].startswith("pkg/m.py:1: `import s3fs`: s3fs is only in the [s3] extra"), pkg
