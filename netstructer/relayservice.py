# -*- test-case-name: tests.test_relay -*-
"""
The former home of the server's relay service, now L{netstructer.relay.service}: its
names are importable from here too, for existing imports.
"""

from __future__ import annotations

from netstructer.relay.service import (
    RelayService,
)

__all__ = [
    "RelayService",
]
