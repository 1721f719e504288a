"""
A blocking client for the echo server: no Twisted code, no reactor.

It sends values of every kind NetStructer carries and checks that each one
comes back equal, with exactly the same types::

    python examples/echo_client.py 127.0.0.1:5000 --key-file echo.key
"""

from __future__ import annotations

import argparse

from netstructer.blocking import link
from netstructer.keys import defaultKeyPath, readKeyFile

VALUES = [
    "hello",
    ["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)],
    {"nested": {"deeper": [1.5, None, b"\x00\xff", 2**70]}, (1, "tuple key"): frozenset("ab")},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="HOST:PORT of the echo server")
    parser.add_argument("--key-file", default=str(defaultKeyPath()))
    args = parser.parse_args()

    key = readKeyFile(args.key_file)
    # link() returns once the server has proved that it holds the key.
    with link(args.address, key, timeout=10) as bridge:
        for value in VALUES:
            bridge.sendBuffer(value)
            echoed = bridge.recvBuffer(maxSize=100_000)
            print(echoed)
            if echoed != value:
                raise SystemExit(f"the server changed {value!r} into {echoed!r}")
    # Leaving the "with" block closes the link with a clean close handshake.


if __name__ == "__main__":
    main()
