"""
The original NetStructer package's client example, on NetStructer: the
same names (``Bridge.Link``, ``SendBuffer``, ``Close``), plus a key::

    python examples/original_client.py 127.0.0.1:5000 --key-file shared.key
"""

from __future__ import annotations

import argparse

from netstructer.blocking import Bridge
from netstructer.keys import defaultKeyPath, readKeyFile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="HOST:PORT of the server")
    parser.add_argument("--key-file", default=str(defaultKeyPath()))
    args = parser.parse_args()

    # Bridge.Link connects and runs the handshake: it returns once the
    # server has proved it holds the same key (AuthenticationError if not).
    bridge = Bridge.Link(args.address, key=readKeyFile(args.key_file))
    bridge.SendBuffer(["hi im haytam", 128, {b"gg": "gg"}, {1, 2, 6, 4}, (False, True)])
    bridge.SendBuffer("support the project")
    bridge.Close()  # a clean close: both values are delivered first


if __name__ == "__main__":
    main()
