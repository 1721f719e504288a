# -*- test-case-name: tests.test_closing -*-
"""
Tests for L{netstructer.closing}: the close state machine, without a
reactor.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netstructer.closing import DEFAULT_SHUTDOWN_GRACE, CloseMachine, CloseStep


class CloseMachineTests(SynchronousTestCase):
    """
    L{CloseMachine} starts the grace period once, says who ends the
    transport, and counts the values the peer has not confirmed.
    """

    def test_default(self) -> None:
        """
        The default grace period is 5 seconds; it must be positive.
        """
        self.assertEqual(DEFAULT_SHUTDOWN_GRACE, 5.0)
        self.assertRaises(ValueError, CloseMachine, 0)
        self.assertRaises(ValueError, CloseMachine, -1)

    def test_startOnce(self) -> None:
        """
        The deadline is set by the first start only.
        """
        machine = CloseMachine(5)
        self.assertFalse(machine.closing)
        self.assertEqual(machine.start(10), 15)
        self.assertIsNone(machine.start(12))
        self.assertEqual(machine.deadline, 15)
        self.assertFalse(machine.expired(14.9))
        self.assertTrue(machine.expired(15))

    def test_initiator(self) -> None:
        """
        The side that closed first completes on the reply, which confirms
        every value sent before the close.
        """
        machine = CloseMachine(5)
        machine.closeSent(0, 7)
        self.assertTrue(machine.sentClose)
        self.assertEqual(machine.unconfirmed(7), 7)
        self.assertIs(machine.closeReceived(1, 7), CloseStep.COMPLETED)
        self.assertEqual(machine.unconfirmed(7), 0)

    def test_responder(self) -> None:
        """
        The side that receives the first close replies; nothing confirms
        what it sent.
        """
        machine = CloseMachine(5)
        self.assertIs(machine.closeReceived(3, 4), CloseStep.REPLIED)
        self.assertEqual(machine.deadline, 8)
        self.assertEqual(machine.unconfirmed(4), 4)
        self.assertIn("close reply", machine.expiredMessage("1.2.3.4:5", 4))

    def test_pong(self) -> None:
        """
        A pong confirms the values written before its ping.
        """
        machine = CloseMachine(5)
        machine.pingSent(3)
        machine.pingSent(5)  # one ping at a time: the first one counts
        machine.pongReceived()
        self.assertEqual(machine.unconfirmed(6), 3)
        machine.pongReceived()  # no ping outstanding: nothing changes
        self.assertEqual(machine.confirmed, 3)

    def test_message(self) -> None:
        """
        The line names the peer, the grace period and the count.
        """
        machine = CloseMachine(2.5)
        machine.closeSent(0, 9)
        message = machine.expiredMessage("10.0.0.1:4000", 9)
        self.assertIn("10.0.0.1:4000", message)
        self.assertIn("2.5 s", message)
        self.assertIn("9 values", message)

    @given(st.lists(st.sampled_from(["value", "ping", "pong"]), max_size=50))
    def test_neverNegative(self, steps: list[str]) -> None:
        """
        Whatever happens, confirmed values never exceed those sent and the
        unconfirmed count is never negative.
        """
        machine = CloseMachine(5)
        sent = 0
        for step in steps:
            if step == "value":
                sent += 1
            elif step == "ping":
                machine.pingSent(sent)
            else:
                machine.pongReceived()
            self.assertLessEqual(machine.confirmed, sent)
            self.assertGreaterEqual(machine.unconfirmed(sent), 0)
