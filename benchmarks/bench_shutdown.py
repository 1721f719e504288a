# -*- test-case-name: tests.test_shutdown -*-
"""
Time to stop: how long a NetStructer server takes to shut down in everyday
cases, each in fresh processes on the loopback interface.

    python benchmarks/bench_shutdown.py [--repo DIR] [--case NAME ...] [--json]

Cases:

  - C{sigterm-0}, C{sigterm-1-idle}, C{sigterm-100-idle}: C{twistd -n
    netstructer --handler echo} gets SIGTERM with 0, 1 or 100 idle Twisted
    clients connected (their reactors run, so they answer the close);
  - C{sigterm-non-reading}: the same with one blocking C{link()} client
    that did one round trip and then sleeps without reading;
  - C{blocking-same-thread}: a script holding a blocking C{Server} and a
    C{link()} to it in one thread calls C{server.close()};
  - C{blocking-ctrl-c}: a script blocked in C{time.sleep} inside C{with
    blocking.Server(...)} (a link connected) gets SIGINT; the C{-recvBuffer},
    C{-waitFor} and C{-session} variants are blocked in the link's
    C{recvBuffer}, the server's C{waitFor} and the server-side
    C{Session.recvBuffer} instead.

(C{python -c} puts the working directory first on C{sys.path}: every
process runs in a temporary directory, so that C{--repo} is the code run.)
Each figure is the seconds from the signal (or the call) to the process's
exit (or the call's return).  C{--repo} runs another checkout's code (for a
before/after comparison).  Every wait is bounded; processes are killed by
PID afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 40.0

IDLE_CLIENTS = """
import sys
from twisted.internet import defer, reactor
from netstructer.client import connect

port, key, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

async def main():
    sessions = [await connect(reactor, ("127.0.0.1", port), key, timeout=10)
                for _ in range(count)]
    print("ready", flush=True)
    await defer.gatherResults([s.whenClosed() for s in sessions])
    reactor.stop()

defer.ensureDeferred(main()).addErrback(lambda f: (f.printTraceback(), reactor.stop()))
reactor.run()
"""

NON_READING_CLIENT = """
import sys, time
from netstructer import blocking

link = blocking.link(("127.0.0.1", int(sys.argv[1])), sys.argv[2], timeout=10)
link.sendBuffer("one")
assert link.recvBuffer() == "one"
link.sendBuffer("two")  # its echo stays unread until after the shutdown
print("ready", flush=True)
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 60)
received = [link.recvBuffer(timeout=10)]
try:
    link.recvBuffer(timeout=10)
except Exception as e:
    received.append(type(e).__name__)
print(repr(received), flush=True)
"""

SAME_THREAD = """
import time
from netstructer import blocking
from netstructer.keys import generateKey

key = generateKey()
server = blocking.Server(("127.0.0.1", 0), key)
server.listen()
link = blocking.link(("127.0.0.1", server.port), key, timeout=10)
session = server.waitFor("127.0.0.1", timeout=10)
link.sendBuffer("one")
assert session.recvBuffer(timeout=10) == "one"
session.sendBuffer("two")
started = time.monotonic()
server.close()
elapsed = time.monotonic() - started
received = [link.recvBuffer(timeout=10)]
try:
    link.recvBuffer(timeout=10)
except Exception as e:
    received.append(type(e).__name__)
print(repr({"elapsed": elapsed, "received": received}), flush=True)
"""

CTRL_C = """
import sys, time
from netstructer import blocking
from netstructer.keys import generateKey

key = generateKey()
with blocking.Server(("127.0.0.1", 0), key) as server:
    server.listen()
    link = blocking.link(("127.0.0.1", server.port), key, timeout=10)
    session = server.waitFor("127.0.0.1", timeout=10)
    print("ready", flush=True)
    blockedIn = sys.argv[1]
    if blockedIn == "sleep":
        time.sleep(60)
    elif blockedIn == "recvBuffer":
        link.recvBuffer(timeout=60)
    elif blockedIn == "waitFor":
        server.waitFor("10.255.255.1", timeout=60)
    else:
        session.recvBuffer(timeout=60)
"""
"""
A script blocked in C{with blocking.Server(...)}, in the call its argument
names: C{sleep}, C{recvBuffer} (a link's), C{waitFor} (a peer that never
comes) or C{Session.recvBuffer}.
"""

CTRL_C_CALLS = ("sleep", "recvBuffer", "waitFor", "Session.recvBuffer")


def _environment(repo: Path, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NETSTRUCTER_KEY", "XDG_CONFIG_HOME", "PYTHONPATH")
    }
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(repo)
    return env


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _kill(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=DEADLINE)


def _waitForLine(process: subprocess.Popen[bytes], text: bytes) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    if text not in line:
        raise RuntimeError(f"expected {text!r} from the process, got {line!r}")


def _waitForPort(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on {port} in time")


def sigterm(
    repo: Path,
    idle: int,
    nonReading: bool,
    grace: float | None = None,
    readAfter: float | None = None,
) -> dict[str, object]:
    """
    Start twistd, connect the clients, send SIGTERM, time the exit.

    @param grace: C{--shutdown-grace}, if given.
    @param readAfter: Seconds after which the non-reading client reads
        again (its output is then C{nonReadingReceived}); it sleeps a
        minute otherwise.

    @return: The seconds to stop, and whether the log is clean.
    """
    from netstructer.keys import writeKeyFile

    with tempfile.TemporaryDirectory() as name:
        home = Path(name)
        keyFile = home / "server.key"
        key = writeKeyFile(keyFile).decode("ascii")
        port = _freePort()
        env = _environment(repo, home)
        logPath = home / "twistd.log"
        with open(logPath, "wb") as log:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from twisted.scripts.twistd import run; run()",
                    "-n",
                    "--pidfile=",
                    "netstructer",
                    "--port",
                    str(port),
                    "--key-file",
                    str(keyFile),
                    "--handler",
                    "echo",
                    "--max-per-ip",
                    "1000",
                    *(["--shutdown-grace", str(grace)] if grace is not None else []),
                ],
                env=env,
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        clients: list[subprocess.Popen[bytes]] = []
        try:
            _waitForPort(port, time.monotonic() + DEADLINE)
            if idle:
                clients.append(
                    subprocess.Popen(
                        [sys.executable, "-c", IDLE_CLIENTS, str(port), key, str(idle)],
                        env=env,
                        cwd=home,
                        stdout=subprocess.PIPE,
                    )
                )
            if nonReading:
                clients.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            NON_READING_CLIENT,
                            str(port),
                            key,
                            *([str(readAfter)] if readAfter is not None else []),
                        ],
                        env=env,
                        cwd=home,
                        stdout=subprocess.PIPE,
                    )
                )
            for client in clients:
                _waitForLine(client, b"ready")
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=DEADLINE)
            elapsed = time.monotonic() - started
            received = None
            if nonReading and readAfter is not None:
                output, _ = clients[-1].communicate(timeout=DEADLINE)
                received = output.decode(errors="replace").strip()
        finally:
            _kill(server, *clients)
        text = logPath.read_text(errors="replace")
        return {
            "seconds": round(elapsed, 3),
            "shutDown": "Server Shut Down." in text,
            "traceback": "Traceback" in text,
            "graceLines": text.count("grace period"),
            "log": text,
            **({"nonReadingReceived": received} if received is not None else {}),
        }


def sameThread(repo: Path) -> dict[str, object]:
    """
    Time C{server.close()} with a link held by the same thread.
    """
    with tempfile.TemporaryDirectory() as name:
        result = subprocess.run(
            [sys.executable, "-c", SAME_THREAD],
            env=_environment(repo, Path(name)),
            cwd=name,
            capture_output=True,
            timeout=DEADLINE,
            check=True,
        )
    report = eval(result.stdout.decode().strip().splitlines()[-1], {})  # noqa: S307 (own output)
    return {"seconds": round(report["elapsed"], 3), "received": report["received"]}


def ctrlC(repo: Path, blockedIn: str = "sleep") -> dict[str, object]:
    """
    Time from SIGINT to the exit of a script blocked in a C{with} block.

    @param blockedIn: The call the script is blocked in, one of
        L{CTRL_C_CALLS}.
    """
    with tempfile.TemporaryDirectory() as name:
        process = subprocess.Popen(
            [sys.executable, "-c", CTRL_C, blockedIn],
            env=_environment(repo, Path(name)),
            cwd=name,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _waitForLine(process, b"ready")
            started = time.monotonic()
            process.send_signal(signal.SIGINT)
            process.wait(timeout=DEADLINE)
            elapsed = time.monotonic() - started
            assert process.stderr is not None
            stderr = process.stderr.read().decode(errors="replace")
        finally:
            _kill(process)
    return {"seconds": round(elapsed, 3), "keyboardInterrupt": "KeyboardInterrupt" in stderr}


CASES = {
    "sigterm-0": lambda repo: sigterm(repo, 0, False),
    "sigterm-1-idle": lambda repo: sigterm(repo, 1, False),
    "sigterm-100-idle": lambda repo: sigterm(repo, 100, False),
    "sigterm-non-reading": lambda repo: sigterm(repo, 0, True),
    "blocking-same-thread": sameThread,
    "blocking-ctrl-c": ctrlC,
    "blocking-ctrl-c-recvBuffer": lambda repo: ctrlC(repo, "recvBuffer"),
    "blocking-ctrl-c-waitFor": lambda repo: ctrlC(repo, "waitFor"),
    "blocking-ctrl-c-session": lambda repo: ctrlC(repo, "Session.recvBuffer"),
}


def main(argv: list[str] | None = None) -> int:
    """
    Run the cases and print a table (or JSON).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to measure")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    results = {}
    for name in args.case or list(CASES):
        try:
            results[name] = CASES[name](args.repo.resolve())
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError, RuntimeError) as e:
            results[name] = {"seconds": None, "error": str(e)[:200]}
        results[name].pop("log", None)
        if not args.json:
            print(f"{name:28} {results[name]}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
