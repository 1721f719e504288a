# -*- test-case-name: tests.test_conformance -*-
"""
The conformance kit's cases for values: VALUE and VALUES records and the
value encoding (sections 5 and 6 of C{docs/protocol.rst}).
"""

from __future__ import annotations
