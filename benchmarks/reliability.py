# -*- test-case-name: tests.test_hostile,tests.test_faults -*-
"""
Measure what a NetStructer server survives, and write C{docs/reliability.rst}.

Runs, against real C{twistd -n netstructer} processes on loopback:

    - every hostile-peer case of L{tests.test_hostile} (a server per
      group, as the tests do), with a well-behaved client making round
      trips throughout, and its hostile senders of streams;
    - the load benchmark of C{benchmarks/load.py} (1 000 sessions x 100
      round trips, saturating; and again paced);
    - the faults of L{tests.test_faults}: a client killed mid-frame,
      SIGTERM while clients send, a restart under a reconnecting client
      (with a short retry delay, and with the default backoff), and
      SIGTERM while a slow handler is behind its client;
    - a fuzzing pass of each target in C{fuzz/} (atheris if installed,
      hypothesis otherwise);

and writes the figures, as measured, to C{docs/reliability.rst}.  Run it
from the repository root on an otherwise idle machine::

    PYTHONPATH=. python benchmarks/reliability.py [--quick] [--fuzz-seconds 60] [--output FILE]

C{--quick} runs the load at 100 sessions x 20 round trips and fuzzes for 5
seconds, to try the script out; publish only a full run.  C{--streams-only}
runs only the hostile senders of streams and prints their section.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

Row = tuple[str, str, str]


def _ms(seconds: float | None) -> str:
    """
    @return: A duration for the table.
    """
    if seconds is None:
        return "not cut"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _kib(size: float) -> str:
    """
    @return: A signed size for the table.
    """
    return f"{size / 1024:+.0f} KiB" if abs(size) < 10 * 2**20 else f"{size / 2**20:+.1f} MiB"


def _progress(message: str) -> None:
    """
    Say what runs now, on standard error.
    """
    print(message, file=sys.stderr, flush=True)


def hostileRows() -> tuple[list[Row], list[str]]:
    """
    Run every hostile case, on two servers as the tests do.

    @return: The table rows, and every problem found.
    """
    from tests.test_hostile import HOSTILE_CASES, ServerProcess, raiseFileLimit, runCase

    raiseFileLimit()
    rows: list[Row] = []
    problems: list[str] = []
    resourceCases = {
        "slow record after the handshake",
        "client that never reads",
        "connection flood",
    }
    groups = [
        [spec for spec in HOSTILE_CASES if spec.name not in resourceCases],
        [spec for spec in HOSTILE_CASES if spec.name in resourceCases],
    ]
    for group in groups:
        home = Path(tempfile.mkdtemp(prefix="nsreliability-"))
        server = ServerProcess(home)
        try:
            for spec in group:
                _progress(f"hostile: {spec.name}")
                result = runCase(server, spec)
                reason = ""
                for line in result.logLines:
                    if line is not None:
                        # "... [logger#level] Dropping 127.0.0.1:1234: why"
                        reason = line.split("] ", 1)[-1]
                        break
                parts = [
                    f"cut in {_ms(result.attack.cut)} (limit {_ms(result.spec.cutLimit)})",
                    f"server RSS {_kib(result.rssGrowth)} at peak",
                    f"{result.checker.roundTrips} round trips of another client OK "
                    f"(slowest {result.checker.worst * 1000:.1f} ms)",
                    *(f"{name}: {value}" for name, value in result.attack.detail.items()),
                    f"log: ``{_peerless(reason)}``" if reason else "no log line",
                ]
                _addRow(rows, problems, spec, parts, result.problems())
        finally:
            server.kill()
            shutil.rmtree(home, ignore_errors=True)
    return rows, problems


def streamRows() -> tuple[list[Row], list[str]]:
    """
    Run every hostile case of streams, on one server that saves streams.

    @return: The table rows, and every problem found.
    """
    from tests.test_hostile import (
        HANDLER_MODULE,
        STREAM_CASES,
        STREAM_OPTIONS,
        ServerProcess,
        raiseFileLimit,
        runStreamCase,
    )

    raiseFileLimit()
    rows: list[Row] = []
    problems: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="nsreliability-"))
    server = ServerProcess(home, STREAM_OPTIONS, handler=f"{HANDLER_MODULE}:Saver")
    try:
        for spec in STREAM_CASES:
            _progress(f"streams: {spec.name}")
            result = runStreamCase(server, spec)
            attack = result.attack
            reasons = [line.split("] ", 1)[-1] for line in result.logLines if line is not None]
            parts = [
                f"{attack.answer} in {_ms(attack.seconds)} (limit {_ms(spec.limit)})",
                "the session goes on" if attack.open else "the session is cut",
                "nothing left under its name" if not result.leftovers else "files left",
                f"server RSS {_kib(result.rssGrowth)} at peak",
                f"{result.checker.roundTrips} round trips of another client OK "
                f"(slowest {result.checker.worst * 1000:.1f} ms)",
                *(f"log: ``{_peerless(reason)}``" for reason in reasons),
            ]
            _addRow(rows, problems, spec, parts, result.problems())
    finally:
        server.kill()
        shutil.rmtree(home, ignore_errors=True)
    return rows, problems


def _addRow(
    rows: list[Row], problems: list[str], spec: Any, parts: list[str], failed: list[str]
) -> None:
    """
    Add a case's row, its failures first (and to C{problems}) if it had any.
    """
    if failed:
        parts.insert(0, f"**FAILED: {'; '.join(failed)}**")
        problems.extend(f"{spec.name}: {each}" for each in failed)
    rows.append((spec.name, spec.load, "; ".join(parts)))


def _peerless(line: str) -> str:
    """
    @return: A log message with its ports replaced by C{PORT}, for the table.
    """
    return re.sub(r"(127\.0\.0\.\d+):\d+", r"\1:PORT", line)


def loadRows(sessions: int, roundTrips: int, pause: float) -> tuple[list[Row], list[str]]:
    """
    Run the load benchmark, saturating and paced.

    @return: The table rows, and every problem found.
    """
    spec = importlib.util.spec_from_file_location("load", REPO / "benchmarks" / "load.py")
    assert spec is not None and spec.loader is not None
    load: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    rows: list[Row] = []
    problems: list[str] = []
    for wait in (0.0, pause):
        _progress(f"load: {sessions} x {roundTrips}, pause {wait}")
        result: dict[str, Any] = load.runLoad(sessions, roundTrips, pause=wait)
        what = f"{sessions:,} sessions x {roundTrips} round trips".replace(",", "\u00a0")
        how = (
            "every session always has one in flight (saturating)"
            if not wait
            else f"each session waits {wait} s between round trips"
        )
        rate = "" if not wait else " offered"
        result_ = (
            f"{len(result['failures'])} failures; p50 {result['p50'] * 1000:.1f} ms, "
            f"p99 {result['p99'] * 1000:.1f} ms, max {result['max'] * 1000:.1f} ms; "
            f"{result['roundTripsPerSecond']:,.0f} round trips/s{rate} "
            f"({result['messagesPerSecond']:,.0f} messages/s); "
            f"server RSS {result['rssPerSession'] / 1024:.1f} KiB/session open, "
            f"{result['rssPerSessionAfter'] / 1024:.1f} KiB/session after the round trips; "
            f"all sessions opened in {result['connectSeconds']:.1f} s"
        )
        rows.append((f"load ({'saturating' if not wait else 'paced'})", f"{what}, {how}", result_))
        problems.extend(f"load: {failure}" for failure in result["failures"])
    return rows, problems


def faultRows() -> tuple[list[Row], list[str]]:
    """
    Run the faults.

    @return: The table rows, and every problem found.
    """
    from tests.test_faults import (
        FAULT_OPTIONS,
        SLOW_HANDLER,
        measureKilledClient,
        measureSigterm,
    )
    from tests.test_hostile import ServerProcess

    rows: list[Row] = []
    problems: list[str] = []

    def withServer(handler: str | None, measure: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """
        Run C{measure} against a fresh server, then kill it.
        """
        home = Path(tempfile.mkdtemp(prefix="nsreliability-"))
        options: dict[str, Any] = {} if handler is None else {"handler": handler}
        server = ServerProcess(home, FAULT_OPTIONS, **options)
        try:
            return measure(server)
        finally:
            server.kill()
            shutil.rmtree(home, ignore_errors=True)

    _progress("faults: client killed mid-frame")
    killed = withServer(None, measureKilledClient)
    rows.append(
        (
            "client killed mid-frame",
            "SIGKILL after half a frame; another session open",
            f"session dropped {_ms(killed['seconds'])} after the kill "
            f"({killed['closedWith']}); sessions {killed['before']} \u2192 "
            f"{killed['during']} \u2192 {killed['after']}; half frame never delivered; "
            f"the other session's {killed['bystander']} round trips after it OK",
        )
    )
    problems.extend(f"killed client: {p}" for p in killed["problems"])

    _progress("faults: SIGTERM while sending")
    term = withServer(None, measureSigterm)
    rows.append(
        (
            "SIGTERM while clients send",
            f"{term['clients']} blocking clients sending numbered values as fast as they can",
            f"sent {term['sent']:,}, delivered {term['delivered']:,}, reported failed "
            f"{term['reportedFailed']:,}, lost silently {term['silentlyLost']:,}; "
            f"{term['clean']} of {term['clients']} links closed cleanly (GOING_AWAY); "
            f"server stopped {term['stopSeconds']:.1f} s after SIGTERM",
        )
    )
    problems.extend(f"SIGTERM: {p}" for p in term["problems"])

    for name, arguments in (
        ("a 0.1 s retry delay, to ('127.0.0.1', port)", ["0.1"]),
        ("a 0.1 s retry delay, to 'tcp:host=127.0.0.1:port=N'", ["0.1", "tcp"]),
        ("the default backoff, to ('127.0.0.1', port)", ["default"]),
    ):
        _progress(f"faults: restart with {name}")
        argv = [
            sys.executable,
            "-c",
            "from tests.test_faults import reconnectMain; reconnectMain()",
            *arguments,
        ]
        delay = None if arguments[0] == "default" else arguments[0]
        done = subprocess.run(
            argv,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            problems.append(f"restart with {name}: {done.stderr[-2000:]}")
            rows.append(("server restarted", f"ReconnectingClient, {name}", "**FAILED**"))
            continue
        restart = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(
            (
                "server restarted",
                f"SIGTERM, new process on the same port; ReconnectingClient with {name}",
                f"new session {_ms(restart['gap'])} after the restarted server first "
                f"served (it could not serve for {restart['down']:.1f} s); the value "
                "queued meanwhile "
                f"{'delivered and echoed' if restart['echoed'] else 'NOT echoed'}",
            )
        )
        problems.extend(f"restart with {name}: {p}" for p in restart["problems"])
        if delay is not None and restart["gap"] >= 1.0:
            problems.append(f"restart with {name}: resumed after {restart['gap']:.2f} s")

    _progress("faults: SIGTERM with a slow handler")
    slow = withServer(SLOW_HANDLER, lambda server: measureSigterm(server, 1, 2000, 200_000))
    rows.append(
        (
            "SIGTERM, slow handler",
            "1 client sending as fast as it can; the handler stops reading 2 ms after each value",
            f"sent {slow['sent']:,}, delivered {slow['delivered']:,}, reported failed "
            f"{slow['reportedFailed']:,}, lost silently {slow['silentlyLost']:,}; "
            f"server stopped {slow['stopSeconds']:.1f} s after SIGTERM",
        )
    )
    return rows, problems


def fuzzRows(seconds: int) -> tuple[list[Row], list[str]]:
    """
    Fuzz each target for C{seconds} (atheris), or 5 000 inputs (hypothesis).

    @return: The table rows, and every problem found.
    """
    rows: list[Row] = []
    problems: list[str] = []
    try:
        import atheris  # noqa: F401 (only whether it is installed matters)
    except ImportError:
        haveAtheris = False
    else:
        haveAtheris = True
    for name, corpus, what in (
        ("fuzz_channel", "channel", "frames into a channel in each of its 5 states"),
        ("fuzz_values", "values", "bytes into the value decoder"),
    ):
        _progress(f"fuzz: {name}")
        script = REPO / "fuzz" / f"{name}.py"
        work = Path(tempfile.mkdtemp(prefix="nsfuzz-"))
        try:
            if haveAtheris:
                (work / "corpus").mkdir()
                argv = [
                    f"-max_total_time={seconds}",
                    "-print_final_stats=1",
                    f"-artifact_prefix={work}/",
                    str(work / "corpus"),
                    str(REPO / "fuzz" / "corpus" / corpus),
                ]
                how = f"atheris, {seconds} s"
            else:
                argv = ["--hypothesis", "5000"]
                how = "hypothesis, 5 000 inputs"
            done = subprocess.run(
                [sys.executable, str(script), *argv],
                env=dict(os.environ, PYTHONPATH=str(REPO)),
                cwd=work,
                capture_output=True,
                text=True,
                timeout=seconds + 600,
                check=False,
            )
            output = done.stdout + done.stderr
            runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", output) or re.search(
                r"(\d+) inputs, no failure", output
            )
            executions = int(runs.group(1)) if runs else 0
            crashes = 0 if done.returncode == 0 else 1
            result = f"{executions:,} executions, {crashes} crashes"
            if crashes:
                problems.append(f"{name}: {output[-3000:]}")
            rows.append((f"fuzzing: {name}", f"{what} ({how})", result))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return rows, problems


def _table(rows: Sequence[Row]) -> list[str]:
    """
    @return: The lines of a list-table of C{rows}.
    """
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 20 30 50",
        "",
        "   * - Case",
        "     - Load",
        "     - Result",
    ]
    for case, load, result in rows:
        lines += [f"   * - {case}", f"     - {load}", f"     - {result}"]
    return [*lines, ""]


def _machine() -> str:
    """
    @return: What this machine is, for the document.
    """
    import twisted

    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Linux {platform.release()}, Python {platform.python_version()}, "
        f"Twisted {twisted.__version__}"
    )


def render(
    sections: Sequence[tuple[str, str, Sequence[Row]]], problems: Sequence[str], command: str
) -> str:
    """
    @return: The text of C{docs/reliability.rst}.
    """
    today = datetime.date.today().isoformat()
    lines = [
        "Reliability",
        "===========",
        "",
        "What a NetStructer server survives, measured.  Every figure below was",
        "produced by ``benchmarks/reliability.py`` against real ``twistd -n",
        "netstructer`` processes on loopback (127.0.0.1), and written to this file",
        "by it: nothing here is typed by hand.  Regenerate it, on an otherwise idle",
        "machine, from the repository root::",
        "",
        "    PYTHONPATH=. python benchmarks/reliability.py",
        "",
        f"This run: {today}, ``{command}``, on {_machine()}.",
        "",
        "The same cases run in CI, smaller and with pass/fail bounds, as",
        "``tests/test_hostile.py``, ``tests/test_faults.py`` and",
        "``tests/test_fuzz_short.py``.",
        "",
    ]
    for title, intro, rows in sections:
        lines += [title, "-" * len(title), "", intro, "", *_table(rows)]
    lines += ["Cases outside their bounds", "--------------------------", ""]
    if problems:
        lines += [f"- {_peerless(problem)}" for problem in problems]
    else:
        lines += [
            "None in this run: every bounded case met its bounds.",
        ]
    return "\n".join(lines) + "\n"


HOSTILE_INTRO = """\
One server (``--handshake-timeout 2 --max-sessions 50 --max-per-ip 20
--keep-alive 1``, an echo handler that also records some values) per group
of cases; each attack comes from a raw socket, while a well-behaved blocking
client makes a round trip every 20 ms (on a new connection every 10, except
during the flood).  *Cut* is the time from the offending bytes (or from
connecting, for silent peers and the slowloris) to the server closing or
resetting the connection, read from the socket's TCP state without reading
it.  *RSS* is the growth of the server's resident set, sampled every 5 ms,
from before the attack to its peak.  *log* is the server's line naming the
peer (ports elided here) and the reason.  In CI each case must: keep the
other client's round trips succeeding, cut within its limit, grow the
resident set by less than 50 MiB, and log the peer and reason.  In the
flood, *slowest connect* is the longest a ``connect()`` took: a burst of
connections overflows the listening socket's accept queue (Twisted's
default backlog is 50; ``--port tcp:5000:backlog=N`` raises it), and the
kernel drops the SYN, which the client sends again a second later."""

LOAD_INTRO = """\
One server process (the echo handler) and one Twisted client process
opening every session with ``netstructer.client.connect`` (50 handshakes in
flight at a time), then making the round trips of every session at once:
send a 16-byte value, wait for its echo, check it.  Saturating, latency is
mostly queueing (a thousand round trips are in flight at once on a
single-threaded server: p50 is about the sessions divided by the rate);
paced, it shows the cost of a round trip under moderate load.  RSS per
session is the growth of the server's resident set from before the client
connected, divided by the sessions.  ``benchmarks/load.py`` runs this alone;
CI runs 50 sessions x 20 round trips."""

FAULT_INTRO = """\
Each fault runs against a fresh server (``--handshake-timeout 5``, the
default keep-alive).  Delivery is counted by the handler, which appends
every value it receives to a file and flushes at once.  A value counts as
*sent* when the client's ``sendBuffer`` returned; *reported failed* when the
client's link ended without a clean close (so the client was told values
may be lost); *lost silently* when it was never processed although the
client's link closed cleanly.  After a restart, *served* is when a probe
(a blocking client trying every 10 ms) first opened a session.  In the
last row the server closes (on SIGTERM) while its handler is far behind:
it keeps processing while the client's values still arrive, for at most
its shutdown grace period (5 s), then ends the connection.  The client,
having answered the close, ends its side at once; as nothing confirms the
values it sent before the server's close, it reports the close as not
clean (``closedCleanly`` false), so the values still in the backlog count
as reported failed, never as lost silently."""

STREAMS_INTRO = """\
One server with the options above, ``--stream-timeout 2``, and a handler
that echoes values and saves streams (the ``save:DIR`` handler); each
attack comes from a raw socket that authenticates and writes the streams
records itself (and answers pings), while a well-behaved blocking client
makes a round trip every 20 ms.  What only one stream can be blamed for
ends that stream, with an ABORT both sides log, and leaves nothing under
its name; what no well-behaved peer does ends the session.  The time is
from the offending record to the server's answer (or cut).  In CI each case
must: answer within its limit, keep or cut the session as it should, log
the peer and reason, leave no file or part of its streams, keep the other
client's round trips succeeding, and grow the resident set by less than 50
MiB (``tests/test_hostile.py``, ``StreamAttackTests``)."""

FUZZ_INTRO = """\
The fuzz targets of ``fuzz/`` (see ``fuzz/README.rst``) from their seed
corpus.  A crash is any exception other than the documented ones, or a
broken invariant (a failed channel accepting a frame, a decoded value that
does not re-encode to itself)."""


def main(argv: list[str]) -> int:
    """
    Measure everything and write the document.

    @return: 1 if any case failed its bounds (the document is written
        anyway, saying so).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast trial run")
    parser.add_argument("--fuzz-seconds", type=int, default=None)
    parser.add_argument("--output", default=str(REPO / "docs" / "reliability.rst"))
    parser.add_argument(
        "--streams-only", action="store_true", help="print the hostile streams' section only"
    )
    args = parser.parse_args(argv)
    if args.streams_only:
        load = os.getloadavg()[0]
        streams, found = streamRows()
        title = "Hostile peers of streams"
        run = (
            f"This section: {datetime.date.today().isoformat()}, ``python"
            f" benchmarks/reliability.py --streams-only``, on {_machine()}, load average"
            f" {load:.2f}."
        )
        print(
            "\n".join([title, "-" * len(title), "", STREAMS_INTRO, "", run, "", *_table(streams)])
        )
        return 1 if found else 0
    sessions, roundTrips = (100, 20) if args.quick else (1000, 100)
    fuzzSeconds = args.fuzz_seconds or (5 if args.quick else 60)
    problems: list[str] = []
    hostile, found = hostileRows()
    problems += found
    streams, found = streamRows()
    problems += found
    load, found = loadRows(sessions, roundTrips, pause=0.25)
    problems += found
    faults, found = faultRows()
    problems += found
    fuzzing, found = fuzzRows(fuzzSeconds)
    problems += found
    command = " ".join(["python benchmarks/reliability.py", *argv])
    text = render(
        [
            ("Hostile peers", HOSTILE_INTRO, hostile),
            ("Hostile peers of streams", STREAMS_INTRO, streams),
            ("Load", LOAD_INTRO, load),
            ("Faults", FAULT_INTRO, faults),
            ("Fuzzing", FUZZ_INTRO, fuzzing),
        ],
        problems,
        command,
    )
    Path(args.output).write_text(text)
    _progress(f"wrote {args.output}")
    for problem in problems:
        _progress(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
