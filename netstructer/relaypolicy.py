# -*- test-case-name: tests.test_relay -*-
"""
The former home of relay access policies, now L{netstructer.relay.policy}: its
names are importable from here too, for existing imports.
"""

from __future__ import annotations

from netstructer.relay.policy import (
    AllowNamed,
    IRelayPolicy,
    PolicyRule,
    RelayPolicy,
    loadPolicy,
    parsePolicy,
)

__all__ = [
    "AllowNamed",
    "IRelayPolicy",
    "PolicyRule",
    "RelayPolicy",
    "loadPolicy",
    "parsePolicy",
]
