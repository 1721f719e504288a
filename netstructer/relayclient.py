# -*- test-case-name: tests.test_relay -*-
"""
The former home of the client's side of the relay, now L{netstructer.relay.client}: its
names are importable from here too, for existing imports.
"""

from __future__ import annotations

from netstructer.relay.client import (
    RelayClient,
    RelayClientCapability,
)

__all__ = [
    "RelayClient",
    "RelayClientCapability",
]
