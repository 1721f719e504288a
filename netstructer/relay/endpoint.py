# -*- test-case-name: tests.test_relay -*-
"""
L{RelayEndpoint}: one server session's end of the relay, sans-IO.  It reads
the relay records the session's client sends, asks the access policy
(L{netstructer.relay.policy}), hands allowed requests to the backend
(L{IRelayBackend<netstructer.relay.routing.IRelayBackend>}), and keeps the
session's bounded queue of values relayed to it.  Attached to a session
core, it is a capability (L{netstructer.session.capability}).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

from twisted.logger import Logger
from zope.interface import implementer

from netstructer.errors import RelayError, RelayRefused
from netstructer.relay.policy import IRelayPolicy
from netstructer.relay.routing import IRelayBackend, IRelayEndpoint
from netstructer.relay.wire import (
    DEFAULT_RELAY_QUEUE,
    MAX_PENDING_ERRORS,
    RELAY_DELIVER,
    RELAY_ERROR,
    RelayOp,
    RelayRequest,
    deliverBody,
    errorFor,
    parseRequest,
)
from netstructer.session.capability import ICapability

__all__ = ["RelayEndpoint"]


@implementer(IRelayEndpoint, ICapability)
class RelayEndpoint:
    """
    One server session's relay: parses the relay records its client sends,
    asks the policy, hands allowed requests to the backend and answers the
    others with a C{RELAY_ERROR} record; and keeps the bounded queue of
    values relayed to it, written while the session's transport accepts
    writes.

    Sans-IO: it is given functions to send a record, to say whether the
    transport is writable, to be called back once it is, and to check that
    an encoded value decodes.

    @ivar name: The session's name, or L{None}.
    @ivar session: The session, for logs.
    @ivar maxQueued: The bound of the queue, in values.
    @ivar dropped: Values dropped because the queue was full.
    """

    capability = "relay"
    _log = Logger()

    def __init__(
        self,
        name: str | None,
        backend: IRelayBackend | None,
        policy: IRelayPolicy | None,
        sendRecord: Callable[[int, bytes], None],
        writable: Callable[[], bool],
        whenWritable: Callable[[Callable[[], None]], None] | None,
        checkValue: Callable[[bytes], object],
        *,
        maxQueued: int = DEFAULT_RELAY_QUEUE,
        session: object = None,
        logger: Logger | None = None,
    ) -> None:
        """
        @param name: The session's name, or L{None} for an anonymous key.
        @param backend: Where requests go; L{None} when relay is off (every
            request is refused).
        @param policy: Who may do what; L{None} allows every named session
            everything.
        @param sendRecord: Sends one relay record to the client.
        @param writable: Whether the transport accepts writes now.
        @param whenWritable: Calls its argument once the transport accepts
            writes again; L{None} when the endpoint is attached to a session
            core as a capability, which tells it with L{sessionWritable}.
        @param checkValue: Decodes an encoded value, raising
            L{RemoteProtocolError} (or L{DecodeError}) if it is malformed:
            nothing malformed is relayed to another client.
        @param maxQueued: The most values queued for this session.
        @param session: The session, for logs.
        @param logger: Where to log.
        """
        if maxQueued < 1:
            raise ValueError("maxQueued must be at least 1")
        self.name = name
        self.session = session
        self.maxQueued = maxQueued
        self.dropped = 0
        self._backend = backend
        self._policy = policy
        self._sendRecord = sendRecord
        self._writable = writable
        self._whenWritable = whenWritable
        self._checkValue = checkValue
        self._queue: deque[bytes] = deque()
        self._errors: OrderedDict[tuple[type, RelayOp, str], RelayError] = OrderedDict()
        self._waiting = False
        self._ended = False
        if logger is not None:
            self._log = logger
        if backend is not None:
            backend.attach(self)

    def __repr__(self) -> str:
        return f"<RelayEndpoint {self.name!r} {len(self._queue)} queued>"

    @property
    def queued(self) -> int:
        """
        Values waiting for the transport.
        """
        return len(self._queue)

    # Requests from the client.

    def recordReceived(self, recordType: int, body: bytes) -> None:
        """
        A relay record arrived from the client (a L{RecordRouter
        <netstructer.records.RecordRouter>} handler).

        @raise RemoteProtocolError: The record is malformed, is not a
            request, or carries a value that does not decode.
        """
        request = parseRequest(recordType, body)
        if request.value:
            self._checkValue(request.value)
        refusal = self._refusal(request)
        if refusal is not None:
            self._log.info(
                "Refused {op} from {sender} for {target}: {why}",
                op=request.op.name.lower(),
                sender=self.name,
                target=request.name,
                why=refusal,
            )
            self.relayFailed(RelayRefused(refusal, request.name), request.op)
            return
        backend = self._backend
        if backend is None:  # pragma: no cover (refused above)
            return
        if request.op is RelayOp.SEND:
            backend.deliver(self, request.name, request.value)
        elif request.op is RelayOp.PUBLISH:
            backend.publish(self, request.name, request.value)
        elif request.op is RelayOp.SUBSCRIBE:
            backend.subscribe(self, request.name)
        else:
            backend.unsubscribe(self, request.name)

    def _refusal(self, request: RelayRequest) -> str | None:
        """
        @return: Why the request is refused, or L{None} if it is allowed.
        """
        if self._backend is None:
            return (
                "relay is not turned on at this server; the operator can turn it on "
                "with --relay (twistd netstructer) or Server(relay=True)"
            )
        if self.name is None:
            return (
                "this session's key has no name, and anonymous sessions may not relay; "
                "ask the operator for a named key (netstructer keygen --name NAME)"
            )
        policy = self._policy
        if policy is None or request.op is RelayOp.UNSUBSCRIBE:
            return None
        if request.op is RelayOp.SEND:
            allowed = policy.maySend(self.name, request.name)
            what = f"send to {request.name!r}"
        elif request.op is RelayOp.PUBLISH:
            allowed = policy.mayPublish(self.name, request.name)
            what = f"publish to topic {request.name!r}"
        else:
            allowed = policy.maySubscribe(self.name, request.name)
            what = f"subscribe to topic {request.name!r}"
        if allowed:
            return None
        return (
            f"the server's relay policy does not let {self.name!r} {what}; "
            "ask the operator to allow it"
        )

    def relayFailed(self, error: RelayError, op: RelayOp) -> None:
        """
        Report a failed request to the client with a C{RELAY_ERROR} record,
        written at once (ahead of queued values: the sender needs it to slow
        down) while the transport accepts writes.  While it does not (a
        sender that floods and does not read), failures are counted instead,
        one record per kind, name and request, at most L{MAX_PENDING_ERRORS}
        of them (further kinds are counted under the last), and written once
        it drains: a client that never reads cannot grow the server's
        memory.
        """
        if self._ended:
            return
        if not self._errors and self._writable():
            self._sendRecord(RELAY_ERROR, errorFor(error, op))
            return
        key = (type(error), op, error.name)
        pending = self._errors.get(key)
        if pending is None and len(self._errors) >= MAX_PENDING_ERRORS:
            key = next(reversed(self._errors))
            pending = self._errors[key]
        if pending is None:
            self._errors[key] = error
        else:
            pending.count += error.count
        self._waitWritable()

    def _waitWritable(self) -> None:
        if not self._waiting:
            self._waiting = True
            if self._whenWritable is not None:
                self._whenWritable(self._drained)

    # Values for the client.

    def enqueue(self, sender: str | None, topic: str | None, value: bytes) -> bool:
        if self._ended:
            return False
        if len(self._queue) >= self.maxQueued:
            self.dropped += 1
            return False
        self._queue.append(deliverBody(sender, topic, value))
        self.flush()
        # Writing may have found the session closing, which ends this
        # endpoint (and detaches it): the value was not taken.
        return not self._ended

    def flush(self) -> None:
        """
        Write queued values while the transport accepts writes; once it
        stops, wait for it to drain.
        """
        errors = self._errors
        while errors and not self._ended:
            if not self._writable():
                self._waitWritable()
                return
            (_, op, _), error = errors.popitem(last=False)
            self._sendRecord(RELAY_ERROR, errorFor(error, op))
        queue = self._queue
        while queue and not self._ended:
            if not self._writable():
                self._waitWritable()
                return
            self._sendRecord(RELAY_DELIVER, queue.popleft())

    def _drained(self) -> None:
        self._waiting = False
        self.flush()

    def ended(self) -> None:
        """
        The session ended: detach from the backend and drop the queue.
        """
        if self._ended:
            return
        self._ended = True
        self._errors.clear()
        if self._queue:
            self._log.info(
                "{count} relayed value(s) for {name} were not written before its session ended",
                count=len(self._queue),
                name=self.name,
            )
            self._queue.clear()
        if self._backend is not None:
            self._backend.detach(self)

    # The capability seam (netstructer.session.capability).

    def sessionOpened(self) -> None:
        """
        Nothing to do: the endpoint is attached once its session opened.
        """

    def sessionWritable(self) -> None:
        """
        The session takes writes again: write what waits.
        """
        if self._waiting:
            self._drained()

    def sessionClosing(self) -> None:
        """
        Nothing more can be written to the session: what is queued for it is
        dropped when it ends.
        """

    def sessionClosed(self, reason: BaseException) -> None:
        """
        The session ended: see L{ended}.
        """
        self.ended()

    def timeReached(self, now: float) -> None:
        """
        The endpoint asks for no time.
        """
