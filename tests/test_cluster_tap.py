# -*- test-case-name: tests.test_cluster_tap -*-
"""
Tests for the cluster's options of C{twistd netstructer} (L{netstructer.tap}:
C{--cluster}, C{--cluster-key}, C{--node-name}, C{--heartbeat}) and of the
C{netstructer cluster status} command line (L{netstructer.cli}), in memory.
The real processes are in L{tests.test_cluster_twistd}.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger

from netstructer import cli, tap
from netstructer.cluster import ClusterService
from netstructer.cluster.config import PASSWORD_VARIABLE
from netstructer.keys import writeKeyFile
from netstructer.server import Server
from tests.test_tap import REPO, _TemporaryHome

URL = "redis://127.0.0.1:6390/3?prefix=test"


class ClusterOptionsTests(_TemporaryHome):
    """
    C{--cluster} and the options that go with it.
    """

    def setUp(self) -> None:
        super().setUp()
        self.clusterKey = self.home / "cluster.key"
        writeKeyFile(self.clusterKey)

    def test_withoutCluster(self) -> None:
        """
        Without C{--cluster}, the server is not a node, and the cluster's
        other options are refused.
        """
        options = self.parse()
        self.assertIsNone(options.cluster)
        self.assertNotIn("cluster", options.serverOptions())
        for option in ("--cluster-key", "--node-name"):
            message = self.parseError(option, "x")
            self.assertIn(f"{option} needs --cluster", message)

    def test_cluster(self) -> None:
        """
        C{--cluster} with C{--cluster-key} makes the server a node: its URL
        parsed, its key file read, its name (the host's by default) and
        heartbeat given to the server.
        """
        options = self.parse("--cluster", URL, "--cluster-key", str(self.clusterKey))
        self.assertEqual((options.cluster.port, options.cluster.db), (6390, 3))
        server = options.serverOptions()
        self.assertIs(server["cluster"], options.cluster)
        self.assertIs(server["clusterKey"], options.clusterKeyring)
        self.assertEqual(server["nodeName"], socket.gethostname())
        self.assertEqual(server["clusterHeartbeat"], 1.0)
        options = self.parse(
            "--cluster",
            URL,
            "--cluster-key",
            str(self.clusterKey),
            "--node-name",
            "n7",
            "--heartbeat",
            "0.5",
        )
        self.assertEqual(options.serverOptions()["nodeName"], "n7")
        self.assertEqual(options.serverOptions()["clusterHeartbeat"], 0.5)

    def test_refused(self) -> None:
        """
        A missing or unusable cluster key file, a bad URL, a bad node name
        and a bad heartbeat are usage errors naming the option; the URL's
        password never appears.
        """
        message = self.parseError("--cluster", URL)
        self.assertIn("--cluster needs --cluster-key", message)
        message = self.parseError("--cluster", URL, "--cluster-key", str(self.home / "nope"))
        self.assertIn("--cluster-key", message)
        message = self.parseError(
            "--cluster", "http://u:s3cret@127.0.0.1/0", "--cluster-key", str(self.clusterKey)
        )
        self.assertIn("--cluster:", message)
        self.assertNotIn("s3cret", message)
        message = self.parseError(
            "--cluster", URL, "--cluster-key", str(self.clusterKey), "--node-name", "a b"
        )
        self.assertIn("--node-name", message)
        message = self.parseError(
            "--cluster", URL, "--cluster-key", str(self.clusterKey), "--heartbeat", "0"
        )
        self.assertIn("--heartbeat", message)

    def test_passwordFromEnvironment(self) -> None:
        """
        The password may come from the environment rather than the
        command line.
        """
        environ = dict(self.environ, **{PASSWORD_VARIABLE: "from-env"})
        options = self.parse(
            "--cluster", URL, "--cluster-key", str(self.clusterKey), environ=environ
        )
        self.assertEqual(options.cluster.password, "from-env")

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        self.patch(tap, "_log", Logger(observer=events.append))
        return events

    def test_makeService(self) -> None:
        """
        L{tap.makeService} makes a node: the cluster's service is a child of
        the server, and the log names the node and the URL without its
        password, warning that a password on the command line can be read
        by others.
        """
        events = self.events()
        options = self.parse(
            "--cluster",
            "redis://:s3cret@127.0.0.1:6390/0",
            "--cluster-key",
            str(self.clusterKey),
            "--node-name",
            "n1",
        )
        service = tap.makeService(options, MemoryReactorClock())
        assert isinstance(service, Server)
        self.assertIsInstance(service.cluster, ClusterService)
        self.assertIn(service.cluster, list(service))
        self.assertNotIn("s3cret", repr(events))
        [node] = [e for e in events if "of the cluster at" in e["log_format"]]
        self.assertEqual((node["node"], node["url"]), ("n1", "redis://:***@127.0.0.1:6390/0"))
        [warning] = [e for e in events if "can be read by other users" in e["log_format"]]
        self.assertEqual(warning["variable"], PASSWORD_VARIABLE)

    def test_noPasswordWarning(self) -> None:
        """
        A password from the environment draws no warning.
        """
        events = self.events()
        environ = dict(self.environ, **{PASSWORD_VARIABLE: "s3cret"})
        options = self.parse(
            "--cluster", URL, "--cluster-key", str(self.clusterKey), environ=environ
        )
        tap.makeService(options, MemoryReactorClock())
        self.assertEqual([e for e in events if "can be read" in e["log_format"]], [])
        self.assertNotIn("s3cret", repr(events))

    def test_noClusterImported(self) -> None:
        """
        Without C{--cluster}, making the service imports neither the
        cluster's package nor a Redis client.
        """
        code = (
            "import sys\n"
            "from twisted.internet.testing import MemoryReactorClock\n"
            "from netstructer import tap\n"
            "options = tap.Options()\n"
            f"options.parseOptions(['--key-file', {str(self.home / 'server.key')!r}])\n"
            "tap.makeService(options, MemoryReactorClock())\n"
            "bad = [m for m in ('netstructer.cluster', 'txredisapi', 'hiredis', 'redis')"
            " if m in sys.modules]\n"
            "print(','.join(bad))\n"
        )
        self.keyFile()
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            cwd=REPO,
        )
        self.assertEqual(out.stdout.strip(), "")


class ClusterCommandTests(_TemporaryHome):
    """
    C{netstructer cluster status}'s command line.
    """

    def main(self, *argv: str) -> tuple[int | cli.Command, str, str]:
        out, err = io.StringIO(), io.StringIO()
        streams = cli.Streams(stdin=io.StringIO(), stdout=out, stderr=err, environ=self.environ)
        return cli.parseCommand(list(argv), streams), out.getvalue(), err.getvalue()

    def test_parse(self) -> None:
        """
        C{cluster status URL} is a command to run with the reactor; its
        options are C{--json} and C{--no-sessions}.
        """
        command, _, _ = self.main("cluster", "status", URL, "--json", "--no-sessions")
        assert isinstance(command, cli.Command)
        self.assertEqual(command.args.url, URL)
        self.assertTrue(command.args.json)
        self.assertTrue(command.args.no_sessions)

    def test_needsAction(self) -> None:
        """
        C{cluster} alone, or C{cluster status} without a URL, is a command
        line error.
        """
        for argv in (["cluster"], ["cluster", "status"]):
            code, _, _ = self.main(*argv)
            self.assertEqual(code, 2)

    def test_badURL(self) -> None:
        """
        A malformed URL is a user error: one line, status 1, no password.
        """
        command, _, _ = self.main("cluster", "status", "http://u:s3cret@host/0")
        assert isinstance(command, cli.Command)
        err = io.StringIO()
        command.streams = cli.Streams(stdout=io.StringIO(), stderr=err, environ=self.environ)
        code = self.successResultOf(command.run(MemoryReactorClock()))
        self.assertEqual(code, 1)
        self.assertIn("netstructer: error: The cluster URL is not valid", err.getvalue())
        self.assertNotIn("s3cret", err.getvalue())
