"""
Send a file to ``file_server.py`` with the blocking API, showing progress::

    python examples/send_file.py 127.0.0.1:5000 backup.tar --key-file files.key

It reads the file in chunks as the server asks for them, so a file larger
than memory goes too.  It prints the server's receipt: the size and SHA-256
of what the server saved, which the sender checked against what it sent.
With ``--resume`` a transfer interrupted before goes on where it stopped.
"""

from __future__ import annotations

import argparse

from netstructer.blocking import link
from netstructer.errors import StreamError
from netstructer.keys import defaultKeyPath, readKeyFile


class Progress:
    """
    Called as the file goes: prints a line each time another tenth has gone.
    """

    def __init__(self) -> None:
        self.tenths = 0

    def __call__(self, sent: int, size: int | None) -> None:
        if size and sent * 10 // size > self.tenths:
            self.tenths = sent * 10 // size
            print(f"{sent} of {size} bytes ({self.tenths * 10}%)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="HOST:PORT of the file server")
    parser.add_argument("path", help="the file to send")
    parser.add_argument("--key-file", default=str(defaultKeyPath()))
    parser.add_argument("--resume", action="store_true", help="go on from an interrupted send")
    args = parser.parse_args()

    with link(args.address, readKeyFile(args.key_file), timeout=10) as bridge:
        try:
            # The meta defaults to {"name": the file's name}; it returns once
            # the server has confirmed the whole file, or raises why not.
            receipt = bridge.sendFile(args.path, progress=Progress(), resume=args.resume)
        except StreamError as error:  # refused, too large, timed out...
            raise SystemExit(f"not sent: {error}") from None
    print(f"sent {args.path}: {receipt.size} bytes, SHA-256 {receipt.hexdigest}")


if __name__ == "__main__":
    main()
