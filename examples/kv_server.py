"""
A Twisted handler that answers values: a small in-memory key-value store.

Each request is a tuple, each answer one value::

    ("set", key, value)  ->  True
    ("get", key)         ->  the value, or None
    anything else        ->  ("error", "what was wrong")

Run it as a script (then ``kv_client.py``)::

    python examples/kv_server.py --port 5000 --key-file kv.key

or under twistd, which loads the handler by name::

    PYTHONPATH=examples twistd -n netstructer --port 5000 --handler kv_server:handler
"""

from __future__ import annotations

import argparse

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorCore

from netstructer.errors import ChannelClosedError, TruncationError
from netstructer.keys import defaultKeyPath, loadOrCreateKeyFile
from netstructer.protocol import BridgeProtocol
from netstructer.server import Server


class KeyValueStore:
    """
    A handler: the server calls it once for each new session.
    """

    def __init__(self) -> None:
        self.data: dict[str, object] = {}

    def answer(self, request: object) -> object:
        """The answer to one request."""
        match request:
            case ("set", str(key), value):
                self.data[key] = value
                return True
            case ("get", str(key)):
                return self.data.get(key)
            case _:
                return ("error", f"not a request: {request!r}")

    def __call__(self, session: BridgeProtocol) -> defer.Deferred[None]:
        # The session is served for as long as it lasts; the Deferred
        # returned tells the server when this handler is done with it.
        return defer.ensureDeferred(self.serve(session))

    async def serve(self, session: BridgeProtocol) -> None:
        while True:
            try:
                request = await session.recvBuffer()
            except (ChannelClosedError, TruncationError):
                return  # the client closed the session, or went away
            session.sendBuffer(self.answer(request))
            # Read the next request only once the client takes the answers:
            # a client that sends without reading cannot make us buffer more.
            await session.whenWritable()


# The store every session shares: what `--handler kv_server:handler` loads.
handler = KeyValueStore()


async def serve(reactor: IReactorCore, port: int, keyFile: str) -> None:
    keyring, _ = loadOrCreateKeyFile(keyFile)
    server = Server(f"tcp:{port}:interface=127.0.0.1", keyring, handler, reactor=reactor)
    listening = await server.listen()
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    print(f"listening on 127.0.0.1:{listening.getHost().port}", flush=True)
    await defer.Deferred()  # serve until Ctrl-C or SIGTERM stops the reactor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--key-file", default=str(defaultKeyPath()))
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(serve(reactor, args.port, args.key_file)))


if __name__ == "__main__":
    main()
