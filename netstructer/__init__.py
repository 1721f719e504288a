# -*- test-case-name: tests -*-
"""
NetStructer: move Python values between programs over TCP, encrypted and
authenticated, on Twisted.

The sans-IO core lives in L{netstructer.values} (the value codec),
L{netstructer.keys} (keys and keyrings) and L{netstructer.channel} (handshake
and record protection).  Errors are in L{netstructer.errors}.
"""

from __future__ import annotations

from netstructer._version import __version__
from netstructer.errors import (
    AuthenticationError,
    BufferDataError,
    DecodeError,
    EncodeError,
    HandshakeError,
    NetStructerError,
    ServerInitializeError,
)

__all__ = [
    "AuthenticationError",
    "BufferDataError",
    "DecodeError",
    "EncodeError",
    "HandshakeError",
    "NetStructerError",
    "ServerInitializeError",
    "__version__",
]
