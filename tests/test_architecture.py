# -*- test-case-name: tests.test_architecture -*-
"""
The shape of the package, as docs/architecture.rst describes it: layers
that import only downwards, no import cycle (counting imports inside
functions and imports made for type checking only), no class over 500
lines and no function over 80.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import netstructer

_PACKAGE = Path(netstructer.__file__).resolve().parent

_LAYERS: list[tuple[str, ...]] = [
    ("netstructer.errors", "netstructer._version"),
    (
        "netstructer.values",
        "netstructer.keys",
        "netstructer._crypto",
        "netstructer.closing",
        "netstructer.tuning",
        "netstructer.keyreload",
        "netstructer.tlsfailure",
        "netstructer._sha256",
    ),
    ("netstructer.channel",),
    ("netstructer.session", "netstructer.records"),
    (
        "netstructer.streams",
        "netstructer.relay.wire",
        "netstructer.relay.client",
        "netstructer.relay.routing",
        "netstructer.relay.endpoint",
        "netstructer.relay.policy",
        "netstructer.relay",
        "netstructer.relaywire",
        "netstructer.relayclient",
        "netstructer.relaypolicy",
        "netstructer.blocking._sockets",
        "netstructer.blocking._reading",
        "netstructer.blocking._link",
        "netstructer.blocking._streams",
    ),
    (
        "netstructer.events",
        "netstructer._framing",
        "netstructer._transport",
        "netstructer._waiting",
        "netstructer._sessionprotocol",
        "netstructer.relay.deferreds",
        "netstructer.streaming",
        "netstructer.protocol",
    ),
    (
        "netstructer.registry",
        "netstructer.handlers",
        "netstructer.relay.service",
        "netstructer.relayservice",
        "netstructer.metrics",
        "netstructer.client",
        "netstructer.cluster",
        "netstructer.server",
        "netstructer.metricsweb",
    ),
    (
        "netstructer.blocking._server",
        "netstructer.blocking._serverstreams",
        "netstructer.blocking",
        "netstructer.status",
        "netstructer.conformance",
        "netstructer.tap",
        "netstructer._argtypes",
        "netstructer.cli",
        "netstructer.streamcli",
        "netstructer.__main__",
        "netstructer",
    ),
]
"""
The layers, lowest first.  A module is in the layer of the longest name
listed that is itself or one of its packages; a module may import its own
layer and those below it.
"""


def _moduleName(path: Path) -> str:
    parts = list(path.relative_to(_PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_moduleName(path): path for path in sorted(_PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, bool]]:
    """
    The package's modules that C{path} imports, anywhere in it, and whether
    each import is made for type checking only.
    """

    def visit(nodes: list[ast.stmt], typeOnly: bool) -> Iterator[tuple[str, bool]]:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                yield from visit(node.body, True)
                yield from visit(node.orelse, typeOnly)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield from _known(alias.name, typeOnly)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield from _known(node.module, typeOnly)
                for alias in node.names:
                    yield from _known(f"{node.module}.{alias.name}", typeOnly)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from visit([child], typeOnly)

    def _known(name: str, typeOnly: bool) -> Iterator[tuple[str, bool]]:
        if name in modules:
            yield name, typeOnly
            # Importing a module imports the packages it is in.
            parts = name.split(".")
            for end in range(1, len(parts)):
                parent = ".".join(parts[:end])
                if parent in modules:
                    yield parent, typeOnly

    yield from visit(ast.parse(path.read_text()).body, False)


def _layerOf(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for rank, names in enumerate(_LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > best[1]
            ):
                best = (rank, len(name))
    return None if best is None else best[0]


class ArchitectureTests(SynchronousTestCase):
    """
    The package keeps the shape docs/architecture.rst gives it.
    """

    def setUp(self) -> None:
        self.modules = _modules()
        self.graph = {
            name: {
                (imported, typeOnly)
                for imported, typeOnly in _imports(path, self.modules)
                if imported != name and not name.startswith(imported + ".")
            }
            for name, path in self.modules.items()
        }

    def test_everyModuleHasALayer(self) -> None:
        """
        Every module of the package is placed in a layer.
        """
        unplaced = [name for name in self.modules if _layerOf(name) is None]
        self.assertEqual(unplaced, [], "place these modules in tests/test_architecture.py")

    def test_importsGoDown(self) -> None:
        """
        No module imports, at run time, a module of a higher layer.
        """
        upward = []
        for name, imports in self.graph.items():
            layer = _layerOf(name)
            for imported, typeOnly in imports:
                target = _layerOf(imported)
                if not typeOnly and layer is not None and target is not None and target > layer:
                    upward.append(f"{name} -> {imported}")
        self.assertEqual(sorted(upward), [])

    def test_noCycles(self) -> None:
        """
        No import cycle, whether the imports run at import time, inside
        functions, or for type checking only.
        """
        graph = {name: {i for i, _ in imports} for name, imports in self.graph.items()}
        cycles = _cycles(graph)
        self.assertEqual(cycles, [])

    def test_sizes(self) -> None:
        """
        No class over 500 lines, no function over 80.
        """
        tooLong = []
        for name, path in self.modules.items():
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    limit = 500
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    limit = 80
                else:
                    continue
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    tooLong.append(f"{name}.{node.name}: {lines} lines")
        self.assertEqual(tooLong, [])

    def test_blockingClientWithoutTwisted(self) -> None:
        """
        The blocking client's modules, and everything they import, import no
        Twisted at run time.
        """
        seen: set[str] = set()
        pending = ["netstructer.blocking._link"]
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            source = self.modules[name].read_text()
            tree = ast.parse(source)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("twisted"):
                    self.fail(f"{name} imports {node.module}")
            pending.extend(i for i, typeOnly in self.graph[name] if not typeOnly)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    @return: The strongly connected components of more than one module.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    onStack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        onStack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                strong(other)
                low[node] = min(low[node], low[other])
            elif other in onStack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                onStack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strong(node)
    return found
