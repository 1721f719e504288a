# -*- test-case-name: tests.test_conformance_cli -*-
"""
The C{netstructer conformance} command.

Check a server against the MUSTs of C{docs/protocol.rst}::

    netstructer conformance 127.0.0.1:5000 --key-file server.key --echo

runs every case of L{netstructer.conformance} against the server at
C{ENDPOINT} (C{host:port}, C{[::1]:port}, or a port on 127.0.0.1) and prints
one line per case (number, section, PASS, FAIL or INFO, title) with what
was observed under it, then C{N passed, M failed, K info}.  C{--echo} says
the server runs the echo handler (C{twistd netstructer --handler echo}),
which some cases need; C{--suite fernet} and C{--cipher ChaChaPoly} choose
what the well-formed peer speaks; C{--case 4.3} runs only the cases under
4.3 (repeatable); C{--deadline} bounds each case (10 seconds by default);
C{--json} prints one JSON document instead of the table.

Check a client instead::

    netstructer conformance --serve 0 --key-file server.key

listens on 127.0.0.1 (0 picks a free port, printed as C{Listening on
127.0.0.1:PORT}), accepts one client connection, plays a server, and checks
what the client does: its hello, its key confirmation, the values it sends,
and its side of the close handshake.

The key is found as by the other commands: C{--key-file}, else the
C{NETSTRUCTER_KEY} environment variable, else the default key file.  The
exit status is 0 when no case failed, 1 when one did, 2 for a usage error
(a bad endpoint, no usable key).
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from typing import IO, Any

from netstructer._argtypes import positiveFloat

__all__ = ["addParser", "runConformance"]

_WIDTH = 100
_DETAIL_LIMIT = 400
_STATUS_WORDS = {"pass": "PASS", "fail": "FAIL", "info": "INFO"}


def _servePort(text: str) -> int:
    """
    argparse type for C{--serve}.

    @raise argparse.ArgumentTypeError: Not a port number.
    """
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text!r}")
    return int(text)


def addParser(commands: Any) -> None:
    """
    Add the C{conformance} subcommand.

    @param commands: The subparsers action of the C{netstructer} parser.
    """
    parser = commands.add_parser(
        "conformance",
        help="check a server (or, with --serve, a client) against the protocol document",
        description=(
            "Run the numbered checks of docs/protocol.rst's MUSTs against a server at"
            " ENDPOINT, or with --serve PORT against one client connecting to this command,"
            " and print a table of the results.  Exit status: 0 if none failed, 1 if one"
            " did, 2 for a usage error."
        ),
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "endpoint",
        metavar="ENDPOINT",
        nargs="?",
        help="the server: host:port, [::1]:port, or a port on 127.0.0.1",
    )
    where.add_argument(
        "--serve",
        metavar="PORT",
        type=_servePort,
        help="listen on 127.0.0.1:PORT (0 picks a free one) and check one client instead",
    )
    parser.add_argument(
        "-k",
        "--key-file",
        metavar="FILE",
        help="the key file (default: $NETSTRUCTER_KEY, else ~/.config/netstructer/key)",
    )
    parser.add_argument(
        "--suite",
        choices=("noise", "fernet"),
        default="noise",
        help="the suite the checks speak to the server (default: noise); with --serve the"
        " kit accepts every suite",
    )
    parser.add_argument(
        "--cipher",
        choices=("AESGCM", "ChaChaPoly"),
        default="AESGCM",
        help="the AEAD of the noise suite (default: AESGCM)",
    )
    parser.add_argument(
        "--echo",
        action="store_true",
        help="the server runs the echo handler: also run the cases that need it",
    )
    parser.add_argument(
        "--case",
        metavar="N",
        action="append",
        default=[],
        help="run only case N, or the cases under N (4.3 runs 4.3.1, 4.3.2, ...); repeatable",
    )
    parser.add_argument(
        "--deadline",
        metavar="SECONDS",
        type=positiveFloat,
        default=10.0,
        help="seconds each case (with --serve: the accept and each step) may take (default 10)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON document, not a table")


class _UsageError(Exception):
    """
    A mistake on the command line or with the key: exit status 2.
    """


def parseEndpoint(text: str) -> tuple[str, int]:
    """
    @param text: C{host:port}, C{[::1]:port}, or a port (on 127.0.0.1).
    @return: The host and port.
    @raise ValueError: It is none of these.
    """
    text = text.strip()
    if text.isdigit():
        host, portText = "127.0.0.1", text
    else:
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^\[\]:\s]+):(\d+)", text)
        if match is None:
            raise ValueError(
                f"ENDPOINT {text!r} is not host:port, [::1]:port or a port;"
                " give the server's address, such as 127.0.0.1:5000"
            )
        host = match.group(1) or match.group(3)
        portText = match.group(2) or match.group(4)
    port = int(portText)
    if not 0 < port <= 65535:
        raise ValueError(f"ENDPOINT {text!r}: the port must be 1 to 65535, not {port}")
    return host, port


def _checkCases(only: list[str], known: list[str]) -> None:
    """
    @raise _UsageError: A C{--case} names no case.
    """
    for number in only:
        if not any(n == number or n.startswith(number + ".") for n in known):
            raise _UsageError(
                f"--case {number}: there is no such case; the cases are {', '.join(known)}"
            )


def _printTable(out: IO[str], description: str, results: list[Any]) -> None:
    """
    Print the results as a table, each detail wrapped under its case.
    """
    print(f"NetStructer conformance: {description}", file=out)
    numberWidth = max([len("Case"), *(len(result.number) for result in results)]) + 2
    sectionWidth = max([len("Section"), *(len(result.section) for result in results)]) + 2
    print(f"{'Case':<{numberWidth}}{'Section':<{sectionWidth}}{'Result':<8}Title", file=out)
    indent = " " * (numberWidth + sectionWidth + 8)
    for result in results:
        print(
            f"{result.number:<{numberWidth}}{result.section:<{sectionWidth}}"
            f"{_STATUS_WORDS[result.status]:<8}{result.title}",
            file=out,
        )
        detail = " ".join(result.detail.split())
        if len(detail) > _DETAIL_LIMIT:
            detail = detail[: _DETAIL_LIMIT - 3] + "..."
        if detail:
            for line in textwrap.wrap(
                detail, width=_WIDTH, initial_indent=indent, subsequent_indent=indent
            ):
                print(line, file=out)
    print(_summary(results), file=out)
    out.flush()


def _counts(results: list[Any]) -> dict[str, int]:
    return {
        status: sum(1 for result in results if result.status == status)
        for status in ("pass", "fail", "info")
    }


def _summary(results: list[Any]) -> str:
    counts = _counts(results)
    return f"{counts['pass']} passed, {counts['fail']} failed, {counts['info']} info"


def runConformance(args: argparse.Namespace, streams: Any) -> int:
    """
    Run C{netstructer conformance}.

    @param args: The parsed command line.
    @param streams: The command's L{Streams<netstructer.cli.Streams>}.
    @return: The exit status: 0 if no case failed, 1 if one did, 2 for a
        usage error (reported on standard error).
    """
    try:
        return _run(args, streams)
    except _UsageError as e:
        streams.error(str(e))
        return 2


def _run(args: argparse.Namespace, streams: Any) -> int:
    from netstructer.conformance import CASES
    from netstructer.conformance._serve import SERVE_CASES
    from netstructer.errors import NetStructerError
    from netstructer.tap import loadKeyring

    if args.serve is None:
        try:
            host, port = parseEndpoint(args.endpoint)
        except ValueError as e:
            raise _UsageError(str(e)) from None
        _checkCases(args.case, [number for number, _, _, _ in CASES])
    else:
        _checkCases(args.case, [number for number, _, _ in SERVE_CASES])
    try:
        keyring, source = loadKeyring(args.key_file, streams.environ, create=False)
    except NetStructerError as e:
        raise _UsageError(str(e)) from None
    if args.serve is None:
        results, target = _checkServer(args, host, port, keyring)
        target["description"] += f", key from {source.description}"
    else:
        results, target = _checkClient(args, keyring, streams)
        target["description"] += f", key from {source.description}"
    if args.json:
        _printJSON(streams.stdout, target, results)
    else:
        _printTable(streams.stdout, str(target["description"]), results)
    return 1 if any(result.status == "fail" for result in results) else 0


def _checkServer(
    args: argparse.Namespace, host: str, port: int, keyring: Any
) -> tuple[list[Any], dict[str, Any]]:
    """
    Run the server's cases against C{host:port}.

    @return: The results, and the target's description for the report.
    """
    from netstructer.conformance import Target, runCases

    results = runCases(
        Target(
            host,
            port,
            keyring,
            deadline=args.deadline,
            suite=args.suite,
            cipher=args.cipher,
            echo=args.echo,
        ),
        only=args.case,
    )
    suite = args.suite if args.suite == "fernet" else f"noise ({args.cipher})"
    shown = f"[{host}]" if ":" in host else host
    return list(results), {
        "mode": "server",
        "host": host,
        "port": port,
        "suite": suite,
        "echo": args.echo,
        "deadline": args.deadline,
        "description": (
            f"the server at {shown}:{port}, {suite} suite,"
            f" {'echo handler' if args.echo else 'no echo'}"
        ),
    }


def _checkClient(
    args: argparse.Namespace, keyring: Any, streams: Any
) -> tuple[list[Any], dict[str, Any]]:
    """
    Listen on C{--serve}'s port and run the client's cases against the
    first client to connect.

    @return: The results, and the target's description for the report.
    @raise _UsageError: The port cannot be listened on.
    """
    from netstructer.conformance._serve import serveCases

    listening: list[int] = []

    def announce(port: int) -> None:
        listening.append(port)
        print(f"Listening on 127.0.0.1:{port}", file=streams.stdout, flush=True)

    try:
        results = serveCases(
            args.serve, keyring, deadline=args.deadline, announce=announce, only=args.case
        )
    except OSError as e:
        raise _UsageError(
            f"cannot listen on 127.0.0.1:{args.serve} ({e.strerror or e});"
            " pick another port, or 0 for a free one"
        ) from None
    return list(results), {
        "mode": "client",
        "host": "127.0.0.1",
        "port": listening[0],
        "deadline": args.deadline,
        "description": f"one client of 127.0.0.1:{listening[0]}",
    }


def _printJSON(stdout: Any, target: dict[str, Any], results: list[Any]) -> None:
    """
    Write the report as JSON.
    """
    document = {
        "target": target,
        "cases": [
            {
                "number": result.number,
                "section": result.section,
                "title": result.title,
                "status": result.status,
                "detail": result.detail,
            }
            for result in results
        ],
        "summary": _counts(results),
    }
    json.dump(document, stdout, indent=2)
    stdout.write("\n")
    stdout.flush()
