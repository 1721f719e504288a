"""
A Twisted client for the key-value store of ``kv_server.py``::

    python examples/kv_client.py tcp:host=127.0.0.1:port=5000 --key-file kv.key

It sets a key, reads it back, asks for a missing one and sends a request
the store does not know, printing each answer.
"""

from __future__ import annotations

import argparse

from twisted.internet import defer, task

from netstructer.client import connect
from netstructer.keys import defaultKeyPath, readKeyFile

REQUESTS = [
    ("set", "greeting", {"text": "hello", "lang": "en"}),
    ("get", "greeting"),
    ("get", "missing"),
    ("delete", "greeting"),
]


async def run(reactor: object, address: str, keyFile: str) -> None:
    # connect() fires once the server has proved it holds the key; it takes
    # any Twisted client endpoint description, "host:port" or (host, port).
    session = await connect(reactor, address, readKeyFile(keyFile))
    try:
        for request in REQUESTS:
            session.sendBuffer(request)
            answer = await session.recvBuffer(timeout=10)
            print(f"{request!r} -> {answer!r}", flush=True)
    finally:
        session.close()
        await session.whenClosed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="where the store listens")
    parser.add_argument("--key-file", default=str(defaultKeyPath()))
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args.address, args.key_file)))


if __name__ == "__main__":
    main()
