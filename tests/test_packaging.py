# -*- test-case-name: tests.test_packaging -*-
"""
Tests of what a user installs: the sdist and the wheel built from this
source tree.

The tree (its files that git tracks or would track) is copied to a temporary
directory, so that nothing a build or an editable install left in the
checkout (C{build/}, C{*.egg-info}, the in-place extension) can make up for
a file the configuration leaves out, and C{python -m build --no-isolation}
builds the sdist and, from it, the wheel, as a release does.  The wheel must
hold every module under C{netstructer/}, the twistd plugin, C{py.typed} and
the compiled accelerator, and nothing else; the sdist must hold what the
wheel is built from.  The build takes a few seconds, once for the module.

C{.ci/run} goes further: it installs each of the two, on its own, into a
fresh virtualenv and uses it (C{.ci/smoke-install}).
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from twisted.trial.unittest import SynchronousTestCase

import netstructer

REPO = Path(__file__).resolve().parent.parent

PLUGIN = "twisted/plugins/netstructer_plugin.py"
"""The twistd plugin: the only file installed outside C{netstructer/}."""

BUILD_TIMEOUT = 300.0

_UNTRACKED_CLUTTER = {
    ".git",
    ".venv",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    "__pycache__",
    "_trial_temp",
    "build",
    "dist",
}
"""Directories never copied when the tree is not a git checkout."""


def sourceModules(root: Path = REPO) -> set[str]:
    """
    @param root: A source tree.
    @return: The C{.py} files under its C{netstructer/}, as paths relative
        to C{root} with forward slashes, leaving out C{__pycache__}.
    """
    return {
        path.relative_to(root).as_posix()
        for path in (root / "netstructer").rglob("*.py")
        if "__pycache__" not in path.relative_to(root).parts
    }


def acceleratorSources(root: Path = REPO) -> set[str]:
    """
    @param root: A source tree.
    @return: The C sources and headers of the accelerator, relative to
        C{root}.
    """
    return {
        path.relative_to(root).as_posix()
        for pattern in ("_speedups*.c", "_speedups*.h")
        for path in (root / "netstructer").glob(pattern)
    }


def canCompile() -> bool:
    """
    @return: Whether this interpreter can compile a C extension: its C
        compiler is on C{PATH} and its headers are installed.  Without them
        the accelerator is left out of the wheel by design (C{setup.py}
        marks it optional).
    """
    compiler = (sysconfig.get_config_var("CC") or "").split()
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return bool(compiler) and shutil.which(compiler[0]) is not None and headers.exists()


def _isExtension(name: str) -> bool:
    """
    @return: Whether C{name} is the compiled accelerator for this
        interpreter, C{netstructer/_speedups.<suffix>}.
    """
    return any(
        name == f"netstructer/_speedups{suffix}"
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def _treeFiles(root: Path) -> list[str]:
    """
    @param root: The source tree.
    @return: Its files as a release sees them: those git tracks, and those
        it would (untracked but not ignored); or, outside a git checkout,
        every file but the clutter of builds, caches and virtualenvs.
    """
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        files = []
        for directory, subdirectories, names in os.walk(root):
            subdirectories[:] = [
                d
                for d in subdirectories
                if d not in _UNTRACKED_CLUTTER and not d.endswith(".egg-info")
            ]
            for name in names:
                if not name.endswith((".pyc", ".so", ".pyd")):
                    files.append(os.path.relpath(os.path.join(directory, name), root))
        return files
    return [name for name in listed.decode("utf-8").split("\0") if name]


def _copyTree(root: Path, destination: Path) -> None:
    """
    Copy the source tree's files (L{_treeFiles}) to C{destination}.
    """
    for name in _treeFiles(root):
        source = root / name
        if not source.is_file():
            # Deleted in the work tree but not yet in git's index.
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


class _Build:
    """
    The sdist and the wheel built from a copy of the source tree, once.

    @ivar directory: The temporary directory holding the copy and the
        distributions.
    @ivar wheel: The names in the wheel.
    @ivar wheelName: The wheel's file name.
    @ivar sdist: The names in the sdist, without its top directory.
    @ivar sdistName: The sdist's file name.
    @ivar error: Why the build failed, or L{None}.
    """

    def __init__(self) -> None:
        """
        Build, in a new temporary directory.
        """
        self.directory = Path(tempfile.mkdtemp(prefix="netstructer-packaging-"))
        self.wheel: set[str] = set()
        self.wheelName = ""
        self.sdist: set[str] = set()
        self.sdistName = ""
        self.error: str | None = None
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        """
        Copy the tree and build; on failure, set L{error}.
        """
        tree = self.directory / "tree"
        out = self.directory / "dist"
        _copyTree(REPO, tree)
        command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(tree)]
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self.error = f"`{' '.join(command)}` did not finish within {BUILD_TIMEOUT} s"
            return
        if result.returncode != 0:
            said = (result.stdout + result.stderr).strip().splitlines()[-40:]
            hint = ""
            if "No module named build" in result.stderr:
                hint = ' (install the test extra: pip install -e ".[test]")'
            self.error = (
                f"`{' '.join(command)}` failed with status {result.returncode}{hint}:\n"
                + "\n".join(said)
            )
            return
        wheels = sorted(out.glob("*.whl"))
        sdists = sorted(out.glob("*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            found = sorted(os.listdir(out))
            self.error = f"expected one wheel and one sdist in {out}, found {found}"
            return
        with zipfile.ZipFile(wheels[0]) as wheel:
            self.wheel = {name for name in wheel.namelist() if not name.endswith("/")}
        self.wheelName = wheels[0].name
        with tarfile.open(sdists[0]) as sdist:
            self.sdist = {
                PurePosixPath(*PurePosixPath(member.name).parts[1:]).as_posix()
                for member in sdist.getmembers()
                if member.isfile()
            }
        self.sdistName = sdists[0].name

    def close(self) -> None:
        """
        Remove the temporary directory.
        """
        shutil.rmtree(self.directory, ignore_errors=True)


class DistributionTests(SynchronousTestCase):
    """
    The wheel and the sdist hold what a user needs, and the wheel nothing
    more.
    """

    _build: _Build | None = None

    @classmethod
    def tearDownClass(cls) -> None:
        """
        Remove the build.
        """
        if cls._build is not None:
            cls._build.close()
            cls._build = None

    def built(self) -> _Build:
        """
        @return: The build, made by the first test that asks.
        @raise self.failureException: The build failed; the message says how.
        """
        cls = type(self)
        if cls._build is None:
            cls._build = _Build()
        if cls._build.error is not None:
            self.fail(f"could not build the distributions: {cls._build.error}")
        return cls._build

    def test_wheelHasEveryModule(self) -> None:
        """
        The wheel holds every C{.py} file under C{netstructer/} (every
        subpackage included), the twistd plugin, C{py.typed} and, where this
        interpreter can compile C, the accelerator.
        """
        build = self.built()
        expected = sourceModules() | {PLUGIN, "netstructer/py.typed"}
        missing = sorted(expected - build.wheel)
        if canCompile() and not any(_isExtension(name) for name in build.wheel):
            missing.append("netstructer/_speedups (the compiled C accelerator)")
        if missing:
            self.fail(
                f"the wheel {build.wheelName} lacks {len(missing)} file(s) of the source tree:\n  "
                + "\n  ".join(missing)
                + "\nInstalls from it would fail to import them: check [options.packages.find]"
                " and [options.package_data] in setup.cfg."
            )

    def test_wheelHasNothingElse(self) -> None:
        """
        Besides its metadata, the wheel holds only the modules of
        C{netstructer/}, C{py.typed}, the accelerator and the plugin: no
        tests, benchmarks, documents, C sources or caches, and no
        C{__init__.py} that would turn Twisted's plugin directory into a
        package of ours.
        """
        build = self.built()
        allowed = sourceModules() | {PLUGIN, "netstructer/py.typed"}
        metadata = f"netstructer-{netstructer.__version__}.dist-info/"
        stray = sorted(
            name
            for name in build.wheel
            if name not in allowed and not _isExtension(name) and not name.startswith(metadata)
        )
        if stray:
            self.fail(
                f"the wheel {build.wheelName} holds {len(stray)} file(s) that are not"
                " NetStructer's modules:\n  "
                + "\n  ".join(stray)
                + "\nExclude them in setup.cfg ([options.packages.find] exclude,"
                " [options.exclude_package_data]); a data file the code reads belongs in"
                " [options.package_data] and in this test's allowed files."
            )

    def test_sdist(self) -> None:
        """
        The sdist holds every module, the plugin, the accelerator's C
        sources and header, the files a build and a reader need, and the
        examples (the tests run them); and no compiled or cached files.
        """
        build = self.built()
        expected = (
            sourceModules()
            | acceleratorSources()
            | {PLUGIN, "netstructer/py.typed"}
            | {"README.rst", "CHANGELOG.rst", "setup.py", "setup.cfg", "pyproject.toml"}
            | {"MANIFEST.in"}
            | {f"examples/{path.name}" for path in (REPO / "examples").glob("*.py")}
            | {"examples/README.rst"}
        )
        self.assertIn("netstructer/_speedups.h", expected)
        missing = sorted(expected - build.sdist)
        if missing:
            self.fail(
                f"the sdist {build.sdistName} lacks {len(missing)} file(s) of the source tree:\n  "
                + "\n  ".join(missing)
                + "\nModules come from [options.packages.find] in setup.cfg, other files from"
                " MANIFEST.in."
            )
        compiled = sorted(
            name
            for name in build.sdist
            if "__pycache__" in name or name.endswith((".pyc", ".so", ".pyd"))
        )
        self.assertEqual(
            compiled,
            [],
            f"the sdist {build.sdistName} holds build output: add it to MANIFEST.in's"
            " global-exclude",
        )

    def test_version(self) -> None:
        """
        Both distributions carry C{netstructer.__version__}: C{setup.cfg}
        reads it from C{netstructer/_version.py}.
        """
        build = self.built()
        version = netstructer.__version__
        self.assertTrue(build.wheelName.startswith(f"netstructer-{version}-"), build.wheelName)
        self.assertEqual(build.sdistName, f"netstructer-{version}.tar.gz")
