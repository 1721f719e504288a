# -*- test-case-name: tests.test_conformance -*-
"""
The conformance kit: numbered checks of the MUSTs of C{docs/protocol.rst}
against a NetStructer server at a TCP address (C{netstructer conformance
HOST:PORT}).

The cases live in one module per section of the document; importing this
package registers them all.
"""

from __future__ import annotations

from netstructer.conformance import _handshake, _records, _values  # noqa: F401 (they register cases)
from netstructer.conformance._core import (
    CASES,
    CaseResult,
    NotApplicable,
    RawPeer,
    Target,
    case,
    readExactly,
    runCases,
)

__all__ = [
    "CASES",
    "CaseResult",
    "NotApplicable",
    "RawPeer",
    "Target",
    "case",
    "readExactly",
    "runCases",
]
