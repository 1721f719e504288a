"""
The original NetStructer package's server example, on NetStructer: the
same names (``Server``, ``init``, ``listen``, ``RecvBuffer``), plus a key.

Run it, then ``original_client.py`` with the same key file::

    python examples/original_server.py --port 5000 --key-file shared.key

It waits for one client from 127.0.0.1, prints the two values that client
sends, and exits.
"""

from __future__ import annotations

import argparse

from netstructer.blocking import Server
from netstructer.keys import defaultKeyPath, loadOrCreateKeyFile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--key-file", default=str(defaultKeyPath()))
    args = parser.parse_args()

    # The original had a key built in; here both sides read the same file.
    key, _ = loadOrCreateKeyFile(args.key_file)
    addr = ("127.0.0.1", args.port)

    # The Twisted server runs in a background thread; these calls block.
    with Server(addr, key) as server:
        server.init()  # bind: ServerInitializeError names the cause if it cannot
        server.listen()  # accept connections
        print(f"listening on 127.0.0.1:{server.port}", flush=True)

        # The original's server.get(ip) returned None until the client had
        # connected; waitFor(ip) waits for it.
        session = server.waitFor("127.0.0.1", timeout=60)
        print(session.RecvBuffer(size=1024 * 100, buffer_size=100000))
        print(session.RecvBuffer())
    # Leaving the "with" block closes every session and the listening port.


if __name__ == "__main__":
    main()
