# -*- test-case-name: tests.test_tlsfailure -*-
"""
Tests for L{netstructer.tlsfailure}: TLS handshake failures named as such,
from real OpenSSL errors (two pyOpenSSL connections over memory BIOs, a
self-signed certificate made with cryptography's x509 builder).
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netstructer.channel import Role
from netstructer.errors import TLSHandshakeError
from netstructer.keys import generateKey
from netstructer.protocol import BridgeConfig, BridgeProtocol
from netstructer.tlsfailure import TLSFailureLimiter, describeTLSFailure, tlsHandshakeError


def selfSigned() -> tuple[crypto.X509, crypto.PKey]:
    """
    @return: A self-signed certificate for C{localhost} and its key.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return crypto.X509.from_cryptography(cert), crypto.PKey.from_cryptography_key(key)


def failedHandshake() -> SSL.Error:
    """
    Run a TLS handshake in memory in which the client verifies a
    self-signed server certificate it does not trust.

    @return: The client's OpenSSL error.
    """
    cert, key = selfSigned()
    serverContext = SSL.Context(SSL.TLS_METHOD)
    serverContext.use_certificate(cert)
    serverContext.use_privatekey(key)
    clientContext = SSL.Context(SSL.TLS_METHOD)
    clientContext.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    server = SSL.Connection(serverContext, None)
    server.set_accept_state()
    client = SSL.Connection(clientContext, None)
    client.set_connect_state()
    for _ in range(10):
        for side, other in ((client, server), (server, client)):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as e:
                if side is client:
                    return e
            try:
                other.bio_write(side.bio_read(65536))
            except SSL.WantReadError:
                pass
    raise AssertionError("the handshake did not fail")


class TLSFailureTests(SynchronousTestCase):
    """
    L{tlsHandshakeError} and L{describeTLSFailure}.
    """

    def test_certificateVerifyFailed(self) -> None:
        """
        An untrusted certificate gives an error naming certificate
        verification and the trustRoots fix.
        """
        error = tlsHandshakeError(failedHandshake())
        assert error is not None
        self.assertIsInstance(error, TLSHandshakeError)
        self.assertIn("certificate verification failed", str(error))
        self.assertIn("certificate verify failed", str(error))
        self.assertIn("trustRoots=DIR", str(error))
        self.assertIn(".pem", str(error))
        self.assertIn("tls=", str(error))

    def test_hostName(self) -> None:
        """
        A host name mismatch names it.
        """
        error = tlsHandshakeError(VerificationError(["DNS-ID mismatch: example.com"]))
        assert error is not None
        self.assertIn("host name verification failed", str(error))
        self.assertIn("example.com", str(error))

    def test_alert(self) -> None:
        """
        A TLS alert is named as one.
        """
        alert = SSL.Error([("SSL routines", "", "tlsv1 alert unknown ca")])
        error = tlsHandshakeError(alert)
        assert error is not None
        self.assertIn("alert", str(error))
        self.assertIn("tlsv1 alert unknown ca", str(error))

    def test_notTLS(self) -> None:
        """
        Other reasons are not TLS failures.
        """
        self.assertIsNone(tlsHandshakeError(ConnectionResetError()))
        self.assertIsNone(describeTLSFailure(None))


class LimiterTests(SynchronousTestCase):
    """
    L{TLSFailureLimiter}.
    """

    def test_oneLinePerInterval(self) -> None:
        """
        One failure per interval is logged, with the count of those skipped.
        """
        limiter = TLSFailureLimiter(10)
        self.assertEqual(limiter.shouldLog(100), 0)
        self.assertIsNone(limiter.shouldLog(101))
        self.assertIsNone(limiter.shouldLog(109.9))
        self.assertEqual(limiter.shouldLog(110), 2)
        self.assertEqual(limiter.shouldLog(130), 0)


class ProtocolTests(SynchronousTestCase):
    """
    L{BridgeProtocol} reports a TLS failure during the handshake as one.
    """

    def lose(self, role: Role) -> tuple[BridgeProtocol, list[dict[str, object]]]:
        events: list[dict[str, object]] = []
        from twisted.logger import Logger

        proto = BridgeProtocol(
            role, BridgeConfig(generateKey()), Clock(), logger=Logger(observer=events.append)
        )
        proto.makeConnection(StringTransport())
        proto.connectionLost(Failure(failedHandshake()))
        return proto, events

    def test_client(self) -> None:
        """
        The client's session fails with L{TLSHandshakeError}.
        """
        proto, _ = self.lose(Role.CLIENT)
        assert proto.closeReason is not None
        self.assertIsInstance(proto.closeReason.value, TLSHandshakeError)
        self.assertIn("certificate verify failed", str(proto.closeReason.value))

    def test_serverLogs(self) -> None:
        """
        A server logs one line naming the peer and the reason.
        """
        _, events = self.lose(Role.SERVER)
        lines = [e for e in events if "TLS handshake with" in str(e.get("log_format"))]
        self.assertEqual(len(lines), 1)
        self.assertIn("certificate verify failed", str(lines[0]["reason"]))
