# -*- test-case-name: tests.test_tuning -*-
"""
Process-wide tuning for servers and tools that move large values.

Every large value crosses several freshly allocated buffers (the encoding,
the ciphertext, the transport's write buffer; the receive buffer, the
plaintext, the decoded value).  With glibc's default settings each buffer
over 128 KiB is a new C{mmap}, and touching its pages costs a page fault per
4 KiB: measured here, that made 1 MiB values travel at a quarter of the speed
they reach when glibc keeps such buffers on its heap and reuses them.

L{tuneAllocator} raises glibc's mmap threshold above the largest default
frame, and its trim threshold above that, so large buffers are reused.  The
cost is memory: up to C{trimThreshold} bytes freed after a burst of large
values may stay with the process.  The C{twistd netstructer} plugin and the
C{netstructer} command call it at start; an application embedding
NetStructer may call it too.  Set C{NETSTRUCTER_MALLOC_TUNING=0} to turn it
off.  On other C libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from typing import Final

__all__ = ["tuneAllocator"]

_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3

DEFAULT_MMAP_THRESHOLD: Final = 64 * 1024 * 1024
"""Allocations below this come from the heap (glibc's own cap is 32 MiB on
64-bit systems, so the effective value is at most that)."""

DEFAULT_TRIM_THRESHOLD: Final = 128 * 1024 * 1024
"""Free memory at the top of the heap kept for reuse, at most."""


def tuneAllocator(
    mmapThreshold: int = DEFAULT_MMAP_THRESHOLD,
    trimThreshold: int = DEFAULT_TRIM_THRESHOLD,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """
    Ask glibc to keep large buffers on its heap and reuse them.

    @param mmapThreshold: Allocations smaller than this are not mmapped.
    @param trimThreshold: Free heap kept before memory is returned to the
        system.
    @param environ: The environment to read C{NETSTRUCTER_MALLOC_TUNING}
        from; L{os.environ} by default.
    @return: Whether the allocator was tuned (C{False} when turned off, not
        on Linux, or not glibc).
    """
    environ = os.environ if environ is None else environ
    if environ.get("NETSTRUCTER_MALLOC_TUNING", "1").strip() in ("0", "no", "off", "false"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; glibc caps the mmap threshold itself.
    tunedMmap: int = mallopt(_M_MMAP_THRESHOLD, min(mmapThreshold, 2**31 - 1))
    tunedTrim: int = mallopt(_M_TRIM_THRESHOLD, min(trimThreshold, 2**31 - 1))
    return tunedMmap == 1 and tunedTrim == 1
