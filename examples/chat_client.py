"""
The chat client of the tutorial: lines typed are said to the room, and
``/msg NAME TEXT`` says something to one person only::

    python examples/chat_client.py 127.0.0.1:5000 --key-file alice.key

The key file holds one named key (``alice <key>``), which is the name the
others see.  End of input (Ctrl-D) leaves the room.
"""

from __future__ import annotations

import argparse

from twisted.internet import defer, stdio, task
from twisted.internet.error import ConnectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from netstructer.client import connect
from netstructer.errors import ChannelClosedError, RelayError
from netstructer.keys import readKeyFile
from netstructer.protocol import BridgeProtocol

ROOM = "room"


class Prompt(LineReceiver):
    """
    Reads lines from standard input and sends them through the server.
    """

    delimiter = b"\n"

    def __init__(self, session: BridgeProtocol) -> None:
        self.session = session

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        try:
            if text.startswith("/msg "):
                name, _, message = text.removeprefix("/msg ").partition(" ")
                self.session.sendTo(name, message)  # to one client, by name
            elif text:
                self.session.publish(ROOM, text)  # to every subscriber
        except RelayError as error:  # an earlier request failed; see below
            print(f"! {error}", flush=True)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.session.close()  # end of input: leave


async def chat(reactor: object, address: str, keyFile: str) -> None:
    keyring = readKeyFile(keyFile)
    me = keyring.names()[0]  # the server knows us by this name; it is never sent
    if me is None:
        raise SystemExit(f"the key in {keyFile} has no name: make one with keygen --name")
    session = await connect(reactor, address, keyring)
    session.subscribe(ROOM)
    session.publish(ROOM, "(joined)")  # the others see it; a publisher does not
    # The server handles one session's requests in order: once this note to
    # ourselves comes back, we are subscribed.
    session.sendTo(me, f"you are in {ROOM!r}")
    stdio.StandardIO(Prompt(session), reactor=reactor)
    while True:
        try:
            message = await session.recvFrom()
        except RelayError as error:
            # The server answers only failures, such as NoSuchSession for a
            # name that nobody connected holds.
            print(f"! {error}", flush=True)
            continue
        except (ConnectionDone, ChannelClosedError):
            return  # we left, or the server closed the session
        private = "" if message.topic else " (to you)"
        print(f"{message.sender}{private}: {message.value}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="HOST:PORT of the chat server")
    parser.add_argument("--key-file", required=True, help="your named key")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(chat(reactor, args.address, args.key_file)))


if __name__ == "__main__":
    main()
