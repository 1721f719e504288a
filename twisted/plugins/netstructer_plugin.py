# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin of NetStructer: C{twistd -n netstructer --port 5000}.

This file only names L{netstructer.tap} (as a string, so that listing
twistd's plugins imports nothing of NetStructer); the options and the
service live there.  The directory holding it must not be a Python package:
there is no C{__init__.py} in C{twisted/} or C{twisted/plugins/}.

Twisted caches what it finds here in C{dropin.cache}, next to this file.  As
Twisted's plugin documentation advises, regenerate the cache after installing
(a user who cannot write there only gets a warning, and the plugin still
works)::

    python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker

NetStructer = ServiceMaker(
    "NetStructer server",
    "netstructer.tap",
    "A NetStructer server: encrypted, authenticated Python values over TCP.",
    "netstructer",
)
