"""
The chat server of the tutorial: it relays values between named clients.

Its key file names a key for each client (``netstructer keygen --name
alice`` prints such a line); a client's name is the name of the key it
proves it holds, so nobody can speak as someone else::

    # chat-server.key
    alice  <alice's key>
    bob    <bob's key>

Run it, then a ``chat_client.py`` for each person::

    python examples/chat_server.py --port 5000 --key-file chat-server.key
"""

from __future__ import annotations

import argparse

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorCore

from netstructer.server import Server


async def serve(reactor: IReactorCore, port: int, keyFile: str) -> None:
    server = Server(
        f"tcp:{port}:interface=127.0.0.1",
        None,  # no key given: read the named keys from keyFile
        keyFile=keyFile,
        relay=True,  # let named clients send to each other and use topics
        reactor=reactor,
    )
    listening = await server.listen()
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    print(f"listening on 127.0.0.1:{listening.getHost().port}", flush=True)
    await defer.Deferred()  # relay until Ctrl-C or SIGTERM stops the reactor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--key-file", required=True, help="the named keys of the clients")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(serve(reactor, args.port, args.key_file)))


if __name__ == "__main__":
    main()
