# -*- test-case-name: tests.test_tuning -*-
"""
Tests for L{netstructer.tuning}.
"""

from __future__ import annotations

import sys

from twisted.trial.unittest import SynchronousTestCase

from netstructer.tuning import tuneAllocator


class TuneAllocatorTests(SynchronousTestCase):
    """
    L{tuneAllocator} tunes glibc, and can be turned off.
    """

    def test_turnedOff(self) -> None:
        """
        C{NETSTRUCTER_MALLOC_TUNING=0} (or C{off}, C{no}, C{false}) leaves the
        allocator alone.
        """
        for value in ("0", "off", "no", "false", " 0 "):
            self.assertFalse(tuneAllocator(environ={"NETSTRUCTER_MALLOC_TUNING": value}))

    def test_tunesGlibc(self) -> None:
        """
        On Linux with glibc, the thresholds are set.
        """
        if not sys.platform.startswith("linux"):
            raise self.skipTest("glibc's mallopt is Linux-only")
        self.assertTrue(tuneAllocator(environ={}))
