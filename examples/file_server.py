"""
A file server: it keeps every file a client sends in a directory, however
large, in constant memory.

Run it, then ``send_file.py`` with the same key file::

    python examples/file_server.py inbox --port 5000 --key-file files.key

A file is saved under the name its sender gives (its last component only,
made safe): written to ``.NAME.part`` beside it and renamed only once it
arrived whole and its SHA-256 was checked, so a transfer that fails leaves
nothing under that name.  A file of that name already there is never
replaced; its sender is told why.  Ctrl-C or SIGTERM stops the server.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorCore

from netstructer.errors import StreamError
from netstructer.keys import defaultKeyPath, loadOrCreateKeyFile
from netstructer.protocol import BridgeProtocol
from netstructer.server import Server
from netstructer.streaming import ReceivedStream
from netstructer.streams.files import streamName


class SaveFiles:
    """
    A handler object with only C{streamReceived}: the server offers it every
    stream a client sends (values would wait for C{recvBuffer}).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def streamReceived(
        self, session: BridgeProtocol, meta: object, stream: ReceivedStream
    ) -> None:
        name = streamName(meta)  # meta["name"], made safe; None if there is none
        if name is None:
            stream.refuse("give the file a name: meta={'name': ...}")
            return
        try:
            # Written in the server's disk threads, never in the reactor's.
            receipt = await stream.saveTo(self.directory / name)
        except StreamError as error:  # refused, aborted, damaged: its sender knows why
            print(f"not saved: {name} from {session.key}: {error}", flush=True)
            return
        print(f"saved {receipt.path} from {session.key}: {receipt}", flush=True)


async def serve(reactor: IReactorCore, directory: Path, port: int, keyFile: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    keyring, _ = loadOrCreateKeyFile(keyFile)
    server = Server(
        f"tcp:{port}:interface=127.0.0.1", keyring, SaveFiles(directory), reactor=reactor
    )
    listening = await server.listen()
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    print(f"listening on 127.0.0.1:{listening.getHost().port}", flush=True)
    await defer.Deferred()  # serve until Ctrl-C or SIGTERM stops the reactor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="where to keep the files")
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--key-file", default=str(defaultKeyPath()))
    args = parser.parse_args()
    task.react(
        lambda reactor: defer.ensureDeferred(
            serve(reactor, args.directory, args.port, args.key_file)
        )
    )


if __name__ == "__main__":
    main()
