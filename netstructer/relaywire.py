# -*- test-case-name: tests.test_relay -*-
"""
The former home of the relay's wire format, now L{netstructer.relay.wire}: its
names are importable from here too, for existing imports.
"""

from __future__ import annotations

from netstructer.relay.wire import (
    DEFAULT_RELAY_QUEUE,
    MAX_NAME_LENGTH,
    MAX_PENDING_ERRORS,
    RELAY_DELIVER,
    RELAY_ERROR,
    RELAY_PUBLISH,
    RELAY_SEND,
    RELAY_SUBSCRIBE,
    RELAY_UNSUBSCRIBE,
    RelayedValue,
    RelayErrorCode,
    RelayOp,
    RelayRequest,
    checkName,
    deliverBody,
    errorBody,
    errorFor,
    parseDeliver,
    parseError,
    parseRequest,
    requestBody,
)

__all__ = [
    "DEFAULT_RELAY_QUEUE",
    "MAX_NAME_LENGTH",
    "MAX_PENDING_ERRORS",
    "RELAY_DELIVER",
    "RELAY_ERROR",
    "RELAY_PUBLISH",
    "RELAY_SEND",
    "RELAY_SUBSCRIBE",
    "RELAY_UNSUBSCRIBE",
    "RelayErrorCode",
    "RelayOp",
    "RelayRequest",
    "RelayedValue",
    "checkName",
    "deliverBody",
    "errorBody",
    "errorFor",
    "parseDeliver",
    "parseError",
    "parseRequest",
    "requestBody",
]
