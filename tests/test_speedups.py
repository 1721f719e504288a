"""
Tests for the C accelerator of the value codec, C{netstructer._speedups}:
that it is built and used where it can be, and that it can be turned off.
Whether it encodes and decodes exactly as the reference implementation does
is tested in C{test_speedups_encode} and C{test_speedups_decode}.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from shutil import which

from twisted.trial.unittest import SynchronousTestCase

from netstructer import values
from netstructer.errors import DecodeError

ROOT = Path(__file__).resolve().parent.parent

EXAMPLE = ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)]


def _compilerPresent() -> bool:
    """
    @return: Whether this machine has the C compiler Python builds
        extensions with, and Python's headers.
    """
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return which(compiler) is not None and headers.exists()


def _accelerated(environ: dict[str, str]) -> str:
    """
    @param environ: The environment of a new interpreter.
    @return: What L{values.ACCELERATED} is in it.
    """
    return subprocess.run(
        [sys.executable, "-c", "import netstructer.values as v; print(v.ACCELERATED)"],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


class AcceleratorTests(SynchronousTestCase):
    """
    The accelerator is built where a compiler is, and can be turned off.
    """

    def test_builtWhereItCanBe(self) -> None:
        """
        On a machine with a C compiler and Python's headers, installing
        NetStructer builds the accelerator and the codec uses it (unless
        C{NETSTRUCTER_PURE_PYTHON} is set, as for the pure-Python run of
        these tests).
        """
        if os.environ.get("NETSTRUCTER_PURE_PYTHON"):
            self.assertFalse(values.ACCELERATED)
            return
        if not _compilerPresent():
            raise self.skipTest("no C compiler or Python headers: NetStructer runs in pure Python")
        self.assertTrue(
            values.ACCELERATED,
            "netstructer._speedups was not built: run pip install -e . again and "
            "read the compiler's messages",
        )

    def test_pureWhenAsked(self) -> None:
        """
        With C{NETSTRUCTER_PURE_PYTHON} set, the codec does not use the
        accelerator; without it, it does whenever the accelerator is built.
        """
        environ = {
            name: value for name, value in os.environ.items() if name != "NETSTRUCTER_PURE_PYTHON"
        }
        path = [str(ROOT), environ.get("PYTHONPATH", "")]
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, path))
        self.assertEqual(_accelerated({**environ, "NETSTRUCTER_PURE_PYTHON": "1"}), "False")
        try:
            import netstructer._speedups  # noqa: F401
        except ImportError:
            built = False
        else:
            built = True
        self.assertEqual(_accelerated(environ), str(built))

    def test_bothAgreeOnTheExample(self) -> None:
        """
        The original package's example value encodes to the same bytes with
        and without the accelerator, and each decodes the other's bytes to
        the same value.
        """
        fast = values.encode(EXAMPLE)
        reference = values.encode(EXAMPLE, accelerated=False)
        self.assertEqual(fast, reference)
        self.assertEqual(values.decode(reference), EXAMPLE)
        self.assertEqual(values.decode(fast, accelerated=False), EXAMPLE)
        self.assertEqual(
            values.Decoder().decodeMany(b"\x92" + fast + fast),
            values.Decoder(accelerated=False).decodeMany(b"\x92" + fast + fast),
        )

    def test_refusalsAreExplained(self) -> None:
        """
        An input the accelerator refuses gets the reference decoder's
        explanation: the same L{DecodeError} message either way.
        """
        for data in [b"", b"\xc1", b"\x91\xc0\xc0", b"\x82\x01\x01\x01\x02", b"\xd4\x07\x00"]:
            with self.assertRaises(DecodeError) as fast:
                values.decode(data)
            with self.assertRaises(DecodeError) as reference:
                values.decode(data, accelerated=False)
            self.assertEqual(str(fast.exception), str(reference.exception))
