"""
Guards for the whole test run.

The blocking facade (L{netstructer.blocking.Server}) runs the global Twisted
reactor in a background thread, and a process can run that reactor only
once; trial's asynchronous tests (C{tests.test_loopback},
C{tests.test_twistd}) run it in the main thread of this same process.  A
test that starts a blocking server here breaks every asynchronous test that
comes after it, far from the cause.  Such tests run their server in a child
process (C{tests.test_blocking}'s scenarios, L{tests.test_hostile.ServerProcess});
this guard names the test that did not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

_REACTOR_THREAD = "netstructer-reactor"


@pytest.fixture(autouse=True)
def _noReactorThread(request: pytest.FixtureRequest) -> Iterator[None]:
    """
    Fail the test that leaves the blocking facade's reactor thread running
    in the test process.
    """
    yield
    running = [t for t in threading.enumerate() if t.name == _REACTOR_THREAD]
    if running:
        pytest.fail(
            f"{request.node.nodeid} started the blocking facade's reactor thread in the "
            "test process, which breaks every later test that runs the reactor: run the "
            "blocking server in a child process (see tests/conftest.py)",
            pytrace=False,
        )
