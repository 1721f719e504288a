# -*- test-case-name: tests.test_packaging -*-
"""
NetStructer's version, defined here and nowhere else.

C{setup.cfg} reads L{__version__} (C{version = attr:
netstructer._version.__version__}, without importing NetStructer), the
package re-exports it as C{netstructer.__version__}, and both C{netstructer
--version} and C{twistd netstructer --version} print L{versionLine}.  Keep
the assignment a plain string literal: that is what lets the build read it.
"""

from __future__ import annotations

__version__ = "1.0.0.dev0"


def versionLine() -> str:
    """
    @return: What C{--version} prints: C{"netstructer 1.0.0"}.
    """
    return f"netstructer {__version__}"
