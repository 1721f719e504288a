# -*- test-case-name: tests.test_cluster_config -*-
"""
Tests for L{netstructer.cluster.config}: cluster URLs (and that their
passwords are never shown), node names, the cluster's key, key names.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from netstructer.cluster.config import (
    PASSWORD_VARIABLE,
    ClusterURL,
    checkNodeName,
    clusterKeyring,
    eventsChannel,
    nodeChannel,
    parseClusterURL,
    redisKey,
)
from netstructer.errors import ClusterError, KeyFileError
from netstructer.keys import Keyring, generateKey, writeKeyFile


class URLTests(SynchronousTestCase):
    """
    L{parseClusterURL}.
    """

    def test_defaults(self) -> None:
        """
        A bare URL takes Redis's port, database 0, no TLS, no password.
        """
        url = parseClusterURL("redis://127.0.0.1", environ={})
        self.assertEqual(
            (url.host, url.port, url.db, url.tls, url.password, url.prefix),
            ("127.0.0.1", 6379, 0, False, None, "netstructer"),
        )

    def test_everything(self) -> None:
        """
        User, password, port, database and options are read.
        """
        url = parseClusterURL(
            "rediss://me:p%40ss@redis.example:6380/2?prefix=prod&timeout=2.5&ca=/etc/ca.pem",
            environ={},
        )
        self.assertEqual(
            (url.host, url.port, url.db, url.tls, url.username, url.password),
            ("redis.example", 6380, 2, True, "me", "p@ss"),
        )
        self.assertEqual((url.prefix, url.timeout, url.caFile), ("prod", 2.5, "/etc/ca.pem"))

    def test_passwordFromEnvironment(self) -> None:
        """
        Without a password in the URL, the environment's is used.
        """
        url = parseClusterURL("redis://h/0", environ={PASSWORD_VARIABLE: "from-env"})
        self.assertEqual(url.password, "from-env")
        url = parseClusterURL("redis://:in-url@h/0", environ={PASSWORD_VARIABLE: "from-env"})
        self.assertEqual(url.password, "in-url")

    def test_passwordNeverShown(self) -> None:
        """
        Neither repr, str nor describe shows the password.
        """
        url = parseClusterURL("redis://user:topsecret@h:1/0", environ={})
        for text in (repr(url), str(url), url.describe()):
            self.assertNotIn("topsecret", text)
            self.assertIn("***", text)
        self.assertEqual(url.describe(), "redis://user:***@h:1/0")

    def test_ipv6(self) -> None:
        """
        An IPv6 address is described in brackets.
        """
        url = parseClusterURL("redis://[::1]:7000", environ={})
        self.assertEqual((url.host, url.describe()), ("::1", "redis://[::1]:7000/0"))

    def test_parsedGivenBack(self) -> None:
        """
        A parsed URL is given back as it is.
        """
        url = ClusterURL("h")
        self.assertIs(parseClusterURL(url), url)

    def test_bad(self) -> None:
        """
        Malformed URLs are refused with a message that never repeats the
        URL (it may hold a password).
        """
        for bad in (
            "http://secretpw@h",
            "redis://",
            "redis://:secretpw@h/x",
            "redis://:secretpw@h:99999",
            "redis://:secretpw@h/0?what=1",
            "redis://:secretpw@h/0?prefix=a b",
            "redis://:secretpw@h/0?timeout=-1",
            "redis://:secretpw@h/0?timeout=x",
            "redis://:secretpw@h/0?ca=/x",
        ):
            error = self.assertRaises(ClusterError, parseClusterURL, bad, {})
            self.assertNotIn("secretpw", str(error))
        self.assertRaises(TypeError, parseClusterURL, b"redis://h")


class NamesTests(SynchronousTestCase):
    """
    Node names and Redis names.
    """

    def test_nodeNames(self) -> None:
        """
        A node name follows a key name's rules.
        """
        self.assertEqual(checkNodeName("n1.example"), "n1.example")
        for bad in ("", "has space", "10.0.0.1", "x" * 65, "-lead"):
            self.assertRaises(ClusterError, checkNodeName, bad)

    def test_redisNames(self) -> None:
        """
        Every key and channel of a cluster shares one hash tag.
        """
        self.assertEqual(redisKey("p", "nodes"), "{p}:nodes")
        self.assertEqual(eventsChannel("p"), "{p}:events")
        self.assertEqual(nodeChannel("p", "n1"), "{p}:to:n1")


class KeyTests(SynchronousTestCase):
    """
    L{clusterKeyring}.
    """

    def test_keyring(self) -> None:
        """
        A keyring is used as it is.
        """
        ring = Keyring([generateKey()])
        self.assertIs(clusterKeyring(ring), ring)

    def test_file(self) -> None:
        """
        A key file is read, with its checks.
        """
        path = self.mktemp()
        writeKeyFile(path, generateKey())
        self.assertEqual(len(clusterKeyring(path)), 1)
        self.assertRaises(KeyFileError, clusterKeyring, self.mktemp())

    def test_subkeys(self) -> None:
        """
        Subkeys differ by purpose and key, and the connection's own
        purposes are refused.
        """
        ring = Keyring([generateKey(), generateKey()])
        a = ring.subkeys(b"netstructer/1 cluster")
        self.assertEqual(len(a), 2)
        self.assertNotEqual(a[0], a[1])
        self.assertNotEqual(a, ring.subkeys(b"another purpose"))
        self.assertIs(a, ring.subkeys(b"netstructer/1 cluster"))
        self.assertRaises(ValueError, ring.subkeys, b"netstructer/1 noise-psk")
