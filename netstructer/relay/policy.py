# -*- test-case-name: tests.test_relay -*-
"""
Relay access policies: who may send to whom, and who may publish or
subscribe where (L{IRelayPolicy}).

With relay turned on and no policy, every named session may do everything
(L{AllowNamed}).  A policy file narrows that, one rule a line; the first
rule that matches decides, and a request no rule matches is refused::

    # ACTION  WHO    REQUEST    TARGET
    allow     alice  send       bob
    allow     *      subscribe  news.*
    allow     feed   publish    news.*
    deny      *      send       admin
    allow     *      send       *

C{WHO} and C{TARGET} are shell-style patterns (C{*}, C{?}, C{[abc]}) over
session names and topics; C{REQUEST} is C{send}, C{publish}, C{subscribe},
or C{*} for all three.  Blank lines and lines starting with C{#} are
ignored.  A program may pass any L{IRelayPolicy} provider instead: a
handler hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from zope.interface import Interface, implementer

from netstructer.errors import ServerInitializeError

__all__ = [
    "AllowNamed",
    "IRelayPolicy",
    "PolicyRule",
    "RelayPolicy",
    "loadPolicy",
    "parsePolicy",
]

_REQUESTS = ("send", "publish", "subscribe")


class IRelayPolicy(Interface):
    """
    Who may relay what (see L{netstructer.relay.policy}).  Each method is
    asked with the requesting session's name (never L{None}: anonymous
    sessions are refused before any policy is asked).
    """

    def maySend(sender: str, recipient: str) -> bool:  # noqa: N805
        """
        @return: Whether C{sender} may send values to C{recipient}.
        """

    def mayPublish(sender: str, topic: str) -> bool:  # noqa: N805
        """
        @return: Whether C{sender} may publish to C{topic}.
        """

    def maySubscribe(sender: str, topic: str) -> bool:  # noqa: N805
        """
        @return: Whether C{sender} may subscribe to C{topic}.
        """


@implementer(IRelayPolicy)
class AllowNamed:
    """
    Every named session may send to any name and publish or subscribe to
    any topic: the default once relay is turned on.
    """

    def maySend(self, sender: str, recipient: str) -> bool:
        return True

    def mayPublish(self, sender: str, topic: str) -> bool:
        return True

    def maySubscribe(self, sender: str, topic: str) -> bool:
        return True


@dataclass(frozen=True)
class PolicyRule:
    """
    One line of a policy file.

    @ivar allow: Whether a match allows (else refuses).
    @ivar who: The pattern of the requesting session's name.
    @ivar request: C{"send"}, C{"publish"}, C{"subscribe"} or C{"*"}.
    @ivar target: The pattern of the recipient's name or the topic.
    """

    allow: bool
    who: str
    request: str
    target: str

    def matches(self, request: str, who: str, target: str) -> bool:
        """
        @return: Whether this rule decides C{request} by C{who} for
            C{target}.
        """
        return (
            (self.request == "*" or self.request == request)
            and fnmatchcase(who, self.who)
            and fnmatchcase(target, self.target)
        )


@implementer(IRelayPolicy)
class RelayPolicy:
    """
    An ordered list of rules; the first that matches decides, and no match
    refuses.

    @ivar rules: The rules.
    """

    def __init__(self, rules: list[PolicyRule]) -> None:
        self.rules = list(rules)

    def __repr__(self) -> str:
        return f"<RelayPolicy {len(self.rules)} rules>"

    def _decide(self, request: str, who: str, target: str) -> bool:
        for rule in self.rules:
            if rule.matches(request, who, target):
                return rule.allow
        return False

    def maySend(self, sender: str, recipient: str) -> bool:
        return self._decide("send", sender, recipient)

    def mayPublish(self, sender: str, topic: str) -> bool:
        return self._decide("publish", sender, topic)

    def maySubscribe(self, sender: str, topic: str) -> bool:
        return self._decide("subscribe", sender, topic)


def parsePolicy(text: str, source: str = "the relay policy") -> RelayPolicy:
    """
    Parse the text of a policy file.

    @param text: The file's text.
    @param source: What to call it in error messages.
    @return: The policy.
    @raise ValueError: A line is not C{allow|deny WHO REQUEST TARGET}; the
        message names the line.
    """
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if len(fields) != 4 or fields[0] not in ("allow", "deny"):
            raise ValueError(
                f"{source}, line {number}: expected 'allow|deny WHO REQUEST TARGET', "
                f"got {stripped[:80]!r}"
            )
        action, who, request, target = fields
        if request not in (*_REQUESTS, "*"):
            raise ValueError(
                f"{source}, line {number}: the request must be send, publish, subscribe or *, "
                f"not {request!r}"
            )
        rules.append(PolicyRule(action == "allow", who, request, target))
    return RelayPolicy(rules)


def loadPolicy(path: str | Path) -> RelayPolicy:
    """
    Read a policy file.

    @raise ServerInitializeError: It cannot be read or parsed; the message
        says where and why.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ServerInitializeError(f"cannot read the relay policy file {path}: {e}") from e
    try:
        return parsePolicy(text, str(path))
    except ValueError as e:
        raise ServerInitializeError(str(e)) from e
