"""
An echo server: every value a client sends comes back to it.

Run it, then the client (``echo_client.py``) with the same key file::

    python examples/echo_server.py --port 5000 --key-file echo.key

The key file is created (mode 0600) if it does not exist.  With
``--metrics PORT`` the server also serves Prometheus metrics on
``http://127.0.0.1:PORT/metrics`` (``pip install 'netstructer[metrics]'``;
``scrape_metrics.py`` reads them).  Ctrl-C or SIGTERM stops it, closing
every session cleanly.
"""

from __future__ import annotations

import argparse

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorCore

from netstructer.handlers import EchoHandler
from netstructer.keys import defaultKeyPath, loadOrCreateKeyFile
from netstructer.server import Server


async def serve(reactor: IReactorCore, port: int, keyFile: str, metricsPort: int | None) -> None:
    """
    Listen on 127.0.0.1 and echo until the reactor stops.
    """
    keyring, created = loadOrCreateKeyFile(keyFile)
    if created:
        print(f"created a new key in {keyFile}: give this file to the clients", flush=True)
    server = Server(
        f"tcp:{port}:interface=127.0.0.1",
        keyring,
        EchoHandler(),  # sends each value back, pausing a client that does not read
        reactor=reactor,
        metrics=None if metricsPort is None else f"tcp:{metricsPort}:interface=127.0.0.1",
    )
    listening = await server.listen()
    # Ctrl-C and SIGTERM stop the reactor; close the sessions cleanly first.
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    print(f"listening on 127.0.0.1:{listening.getHost().port}", flush=True)
    if metricsPort is not None:
        print(f"metrics on http://127.0.0.1:{metricsPort}/metrics", flush=True)
    await defer.Deferred()  # serve until the reactor stops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--key-file", default=str(defaultKeyPath()))
    parser.add_argument("--metrics", type=int, metavar="PORT", help="serve /metrics here")
    args = parser.parse_args()
    task.react(
        lambda reactor: defer.ensureDeferred(serve(reactor, args.port, args.key_file, args.metrics))
    )


if __name__ == "__main__":
    main()
