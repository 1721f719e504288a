# -*- test-case-name: tests.test_fuzz_short -*-
"""
A short, bounded pass of the two fuzz targets in C{fuzz/}: the channel's
frame input (C{fuzz/fuzz_channel.py}) and the value decoder
(C{fuzz/fuzz_values.py}).

Every file of the seed corpus (C{fuzz/corpus/}) runs through its target
first.  Then, if atheris is installed, each script runs coverage-guided
for L{ATHERIS_SECONDS} seconds in a child process, with a temporary output
corpus (the checked-in seeds are only read); otherwise a bounded
hypothesis run calls the same target function.  Long runs are described in
C{fuzz/README.rst}.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parent.parent
FUZZ = REPO / "fuzz"

ATHERIS_SECONDS = 10
"""How long each target runs under atheris."""

HYPOTHESIS_EXAMPLES = 1500
"""How many inputs each target gets from hypothesis when atheris is missing."""

try:
    import atheris  # noqa: F401 (only whether it is installed matters)
except ImportError:
    HAVE_ATHERIS = False
else:
    HAVE_ATHERIS = True


def loadTarget(name: str) -> ModuleType:
    """
    Import a fuzz script as a module (not as C{__main__}, so that atheris
    does not instrument it).

    @param name: C{"fuzz_channel"} or C{"fuzz_values"}.
    @return: The module.
    """
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runAtheris(test: SynchronousTestCase, name: str, corpus: str) -> int:
    """
    Run a fuzz script under atheris for L{ATHERIS_SECONDS} seconds.

    @param test: The test, for temporary directories.
    @param name: The script's name.
    @param corpus: The seed corpus directory under C{fuzz/corpus}.
    @return: How many inputs ran.
    @raise AssertionError: It crashed or did not report.
    """
    work = Path(test.mktemp()).resolve()
    output = work / "corpus"
    output.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZ / f"{name}.py"),
            f"-max_total_time={ATHERIS_SECONDS}",
            "-timeout=20",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            f"-artifact_prefix={work}/",
            str(output),
            str(FUZZ / "corpus" / corpus),
        ],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=ATHERIS_SECONDS + 60,
        check=False,
    )
    output_ = result.stdout + result.stderr
    test.assertEqual(result.returncode, 0, output_[-4000:])
    match = re.search(r"stat::number_of_executed_units:\s*(\d+)", output_)
    test.assertIsNotNone(match, output_[-4000:])
    assert match is not None
    return int(match.group(1))


class SeedCorpusTests(SynchronousTestCase):
    """
    The checked-in seeds run through their targets.
    """

    def test_channelSeeds(self) -> None:
        """
        Every seed of C{fuzz/corpus/channel} passes the channel target, and
        the seeds the script makes are all there.
        """
        target = loadTarget("fuzz_channel")
        files = sorted((FUZZ / "corpus" / "channel").iterdir())
        self.assertEqual({f.name for f in files}, set(target.seeds()))
        for seed in files:
            target.testOneInput(seed.read_bytes())

    def test_valueSeeds(self) -> None:
        """
        Every seed of C{fuzz/corpus/values} passes the value target, and
        the seeds the script makes are all there.
        """
        target = loadTarget("fuzz_values")
        files = sorted((FUZZ / "corpus" / "values").iterdir())
        self.assertEqual({f.name for f in files}, set(target.seeds()))
        for seed in files:
            target.testOneInput(seed.read_bytes())

    def test_oracleCatchesFailures(self) -> None:
        """
        The value target's oracle tells values apart by type, float bits
        and order, so that a codec that changed them would be caught.
        """
        canonical = loadTarget("fuzz_values").canonical
        self.assertEqual(canonical([float("nan")]), canonical([float("nan")]))
        self.assertNotEqual(canonical(0.0), canonical(-0.0))
        self.assertNotEqual(canonical((1,)), canonical([1]))
        self.assertNotEqual(canonical(True), canonical(1))
        self.assertNotEqual(canonical({1: 2, 3: 4}), canonical({3: 4, 1: 2}))
        self.assertEqual(canonical({"a", "b", "c"}), canonical({"c", "b", "a"}))


class ShortFuzzTests(SynchronousTestCase):
    """
    A bounded fuzzing pass of each target: atheris if installed, else
    hypothesis.
    """

    def fuzz(self, name: str, corpus: str) -> int:
        """
        Fuzz one target briefly.

        @return: How many inputs ran.
        """
        if HAVE_ATHERIS:
            return runAtheris(self, name, corpus)
        module = loadTarget(name)
        helpers = loadTarget("fuzz_channel")
        seeds = [f.read_bytes() for f in sorted((FUZZ / "corpus" / corpus).iterdir())]
        count: int = helpers.runHypothesis(
            module.testOneInput, module.hypothesisInputs(), HYPOTHESIS_EXAMPLES, seeds
        )
        return count

    def test_channel(self) -> None:
        """
        No frame sequence makes a channel, in any state, raise anything
        but its documented protocol errors.
        """
        self.assertGreater(self.fuzz("fuzz_channel", "channel"), 100)

    def test_values(self) -> None:
        """
        No input makes the decoder raise anything but L{DecodeError}, and
        every value it decodes re-encodes and decodes back the same.
        """
        self.assertGreater(self.fuzz("fuzz_values", "values"), 100)
