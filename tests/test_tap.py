# -*- test-case-name: tests.test_tap -*-
"""
Tests for L{netstructer.tap}, the C{twistd netstructer} plugin: option
parsing, start-up errors, first-start key creation, the service it builds,
and the plugin's discovery.  All in memory: endpoints listen on a
L{MemoryReactor}.
"""

from __future__ import annotations

import datetime
import errno
import io
import ipaddress
import os
import stat
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.logger import Logger
from twisted.plugin import IPlugin, getPlugins
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import netstructer
from netstructer import tap
from netstructer._version import versionLine
from netstructer.errors import ServerInitializeError
from netstructer.handlers import EchoHandler, LogHandler
from netstructer.keys import ENVIRONMENT_VARIABLE, generateKey, readKeyFile, writeKeyFile
from netstructer.server import Server

REPO = Path(__file__).resolve().parent.parent


def makeCertificates(directory: Path) -> dict[str, Path]:
    """
    Make a throwaway CA, a server certificate for C{localhost} and
    C{127.0.0.1} (in the subject alternative names), a client certificate,
    and a second, unrelated CA with its own client certificate.

    @param directory: Where to write the PEM files.
    @return: The files by name: C{ca}, C{serverCert}, C{serverKey}, C{server}
        (certificate and key in one file), C{clientCert}, C{clientKey},
        C{otherClientCert}, C{otherClientKey}, and C{trustRoots}, a directory
        holding only C{ca.pem} (for C{tls:} client descriptions).
    """
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def build(
        subject: str,
        issuer: x509.Name,
        signingKey: Any,
        isCA: bool,
        sans: list[x509.GeneralName] | None = None,
        usage: x509.ObjectIdentifier | None = None,
    ) -> tuple[x509.Certificate, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=isCA, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(signingKey or key, hashes.SHA256()), key

    def pem(certificate: x509.Certificate) -> bytes:
        return certificate.public_bytes(serialization.Encoding.PEM)

    def keyPEM(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    caCert, caKey = build("NetStructer test CA", name("NetStructer test CA"), None, True)
    otherCert, otherKey = build("Other CA", name("Other CA"), None, True)
    serverCert, serverKey = build(
        "localhost",
        caCert.subject,
        caKey,
        False,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
    )
    clientCert, clientKey = build(
        "client", caCert.subject, caKey, False, None, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    )
    otherClientCert, otherClientKey = build(
        "intruder",
        otherCert.subject,
        otherKey,
        False,
        None,
        x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    files = {
        "ca": pem(caCert),
        "serverCert": pem(serverCert),
        "serverKey": keyPEM(serverKey),
        "server": pem(serverCert) + keyPEM(serverKey),
        "clientCert": pem(clientCert),
        "clientKey": keyPEM(clientKey),
        "otherClientCert": pem(otherClientCert),
        "otherClientKey": keyPEM(otherClientKey),
    }
    paths: dict[str, Path] = {}
    for label, data in files.items():
        path = directory / f"{label}.pem"
        path.write_bytes(data)
        paths[label] = path
    trustRoots = directory / "trust-roots"
    trustRoots.mkdir()
    (trustRoots / "ca.pem").write_bytes(files["ca"])
    paths["trustRoots"] = trustRoots
    return paths


class _TemporaryHome(SynchronousTestCase):
    """
    Gives each test a temporary home directory and an environment that
    points there, so no key file outside it is read or written.
    """

    def setUp(self) -> None:
        """
        Make the home directory and the environment.
        """
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(parents=True)
        self.environ: dict[str, str] = {"HOME": str(self.home)}
        self.defaultKey = self.home / ".config" / "netstructer" / "key"

    def parse(self, *argv: str, environ: dict[str, str] | None = None) -> tap.Options:
        """
        Parse options in the temporary environment.

        @param argv: The command line.
        @param environ: Another environment, if given.
        @return: The parsed options.
        """
        options = tap.Options(environ=self.environ if environ is None else environ)
        options.parseOptions(list(argv))
        return options

    def parseError(self, *argv: str) -> str:
        """
        Parse options that must be refused.

        @param argv: The command line.
        @return: The message of the L{usage.UsageError}.
        """
        error = self.assertRaises(usage.UsageError, self.parse, *argv)
        return str(error)

    def keyFile(self, name: str = "server.key", mode: int = 0o600) -> tuple[Path, bytes]:
        """
        Write a key file.

        @param name: Its name, in the home directory.
        @param mode: Its mode.
        @return: Its path and the key.
        """
        path = self.home / name
        key = writeKeyFile(path)
        os.chmod(path, mode)
        return path, key


class OptionsTests(_TemporaryHome):
    """
    Tests for parsing L{tap.Options}.
    """

    def test_defaults(self) -> None:
        """
        Without options, the server listens on 127.0.0.1:5000 with the echo
        handler, the noise suite, 16 MiB values, a 10 second handshake
        timeout, a 5 second shutdown grace period, a 60 second keep-alive and
        no idle timeout.
        """
        options = self.parse()
        self.assertEqual(options.endpoints, ["tcp:5000:interface=127.0.0.1:backlog=1024"])
        self.assertIsInstance(options.handler, EchoHandler)
        self.assertEqual(
            options.serverOptions(),
            {
                "suite": "noise",
                "acceptSuites": ("noise",),
                "maxBufferSize": 16 * 1024 * 1024,
                "handshakeTimeout": 10.0,
                "shutdownGrace": 5.0,
                "idleTimeout": None,
                "keepAliveInterval": 60.0,
            },
        )
        self.assertIsNone(options.tlsOptions)

    def test_barePortHonoursInterface(self) -> None:
        """
        A bare port number becomes C{tcp:N} on C{--interface}, quoted for the
        endpoint description (IPv6 addresses hold colons).
        """
        self.assertEqual(
            self.parse("--port", "6000").endpoints, ["tcp:6000:interface=127.0.0.1:backlog=1024"]
        )
        self.assertEqual(
            self.parse("-p", "6000", "--interface", "0.0.0.0").endpoints,  # noqa: S104
            ["tcp:6000:interface=0.0.0.0:backlog=1024"],
        )
        self.assertEqual(
            self.parse("--port", "6000", "--interface", "::1").endpoints,
            ["tcp:6000:interface=\\:\\:1:backlog=1024"],
        )
        self.assertEqual(
            self.parse("--port", "0").endpoints, ["tcp:0:interface=127.0.0.1:backlog=1024"]
        )

    def test_descriptionUnchanged(self) -> None:
        """
        An endpoint description is used as given.
        """
        options = self.parse("--port", "tcp:7000:interface=0.0.0.0:backlog=1024")
        self.assertEqual(options.endpoints, ["tcp:7000:interface=0.0.0.0:backlog=1024"])

    def test_listenRepeatable(self) -> None:
        """
        C{--listen} adds endpoints, after C{--port}, in order.
        """
        socket = str(self.home / "ns.sock")
        options = self.parse("--listen", f"unix:{socket}", "-l", "7001", "--port", "7000")
        self.assertEqual(
            options.endpoints,
            [
                "tcp:7000:interface=127.0.0.1:backlog=1024",
                f"unix:{socket}",
                "tcp:7001:interface=127.0.0.1:backlog=1024",
            ],
        )

    def test_suites(self) -> None:
        """
        C{--suite} takes one suite or both, comma-separated; the first is the
        server's own.
        """
        self.assertEqual(self.parse("--suite", "fernet").serverOptions()["suite"], "fernet")
        options = self.parse("--suite", "fernet, noise")
        self.assertEqual(options.serverOptions()["acceptSuites"], ("fernet", "noise"))

    def test_numbers(self) -> None:
        """
        The numeric options are parsed into the L{Server} options.
        """
        options = self.parse(
            "--max-buffer-size",
            "1M",
            "--max-sessions",
            "5",
            "--max-per-ip",
            "2",
            "--handshake-timeout",
            "2.5",
            "--shutdown-grace",
            "1.5",
            "--idle-timeout",
            "30",
            "--keep-alive",
            "0",
        )
        self.assertEqual(
            options.serverOptions(),
            {
                "suite": "noise",
                "acceptSuites": ("noise",),
                "maxBufferSize": 1024 * 1024,
                "maxSessions": 5,
                "maxPerIP": 2,
                "handshakeTimeout": 2.5,
                "shutdownGrace": 1.5,
                "idleTimeout": 30.0,
                "keepAliveInterval": None,
            },
        )

    def test_sizes(self) -> None:
        """
        C{--max-buffer-size} takes bytes with binary units, up to 2 GiB.
        """
        self.assertEqual(self.parse("--max-buffer-size", "4096")["max-buffer-size"], 4096)
        self.assertEqual(self.parse("--max-buffer-size", "64KiB")["max-buffer-size"], 65536)
        self.assertEqual(self.parse("--max-buffer-size", "2047M")["max-buffer-size"], 2047 * 2**20)
        self.assertRaises(usage.UsageError, self.parse, "--max-buffer-size", "2G")

    def test_idleTimeoutZero(self) -> None:
        """
        C{--idle-timeout 0} means no idle timeout.
        """
        self.assertIsNone(self.parse("--idle-timeout", "0")["idle-timeout"])

    def test_handlers(self) -> None:
        """
        C{--handler} loads a built-in handler by name, or one of the user's by
        C{package.module:name}.
        """
        self.assertIsInstance(self.parse("--handler", "log").handler, LogHandler)
        self.assertIsInstance(
            self.parse("--handler", "netstructer.handlers:EchoHandler").handler, EchoHandler
        )

    def test_badValuesNameTheOption(self) -> None:
        """
        A bad value is a usage error whose message names the option.
        """
        cases = [
            (["--max-sessions", "many"], "--max-sessions"),
            (["--max-sessions", "0"], "--max-sessions"),
            (["--max-per-ip", "-1"], "--max-per-ip"),
            (["--handshake-timeout", "0"], "--handshake-timeout"),
            (["--shutdown-grace", "0"], "--shutdown-grace"),
            (["--handshake-timeout", "soon"], "--handshake-timeout"),
            (["--handshake-timeout", "nan"], "--handshake-timeout"),
            (["--idle-timeout", "-5"], "--idle-timeout"),
            (["--keep-alive", "inf"], "--keep-alive"),
            (["--suite", "rot13"], "--suite"),
            (["--suite", ","], "--suite"),
            (["--max-buffer-size", "0"], "--max-buffer-size"),
            (["--max-buffer-size", "3G"], "--max-buffer-size"),
            (["--max-buffer-size", "lots"], "--max-buffer-size"),
            (["--port", "70000"], "--port"),
            (["--port", ""], "--port"),
            (["--port", "carrier-pigeon:5000"], "--port"),
            (["--listen", ""], "--listen"),
            (["--listen", "tcp:5000:interface=127.0.0.1:backlog=1024"], "--listen"),
            (["--key-file", ""], "--key-file"),
            (["--handler", ""], "--handler"),
        ]
        for argv, option in cases:
            message = self.parseError(*argv)
            self.assertIn(option, message, argv)

    def test_interfaceNeedsBarePort(self) -> None:
        """
        C{--interface} with only endpoint descriptions is an error: it would
        be silently ignored.
        """
        message = self.parseError("--port", "tcp:5000", "--interface", "0.0.0.0")  # noqa: S104
        self.assertIn("--interface", message)
        self.assertIn("interface=0.0.0.0", message)

    def test_unknownOption(self) -> None:
        """
        An unknown option is a usage error.
        """
        self.parseError("--colour", "blue")

    def test_version(self) -> None:
        """
        C{--version} prints C{netstructer} and NetStructer's version (not
        Twisted's, which L{usage.Options} would print), as C{netstructer
        --version} does, and exits 0 before any key is loaded or made.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        error = self.assertRaises(SystemExit, self.parse, "--version")
        self.assertEqual(error.code, 0)
        self.assertEqual(out.getvalue(), f"netstructer {netstructer.__version__}\n")
        self.assertEqual(out.getvalue().strip(), versionLine())
        self.assertFalse(self.defaultKey.exists())

    def test_versionInHelp(self) -> None:
        """
        C{--help} describes C{--version} as NetStructer's version.
        """
        self.assertIn("Display NetStructer's version and exit.", str(tap.Options()))


class KeyTests(_TemporaryHome):
    """
    Tests for how L{tap.Options} finds the server's key.
    """

    def test_firstStartCreatesKey(self) -> None:
        """
        Without C{--key-file} or C{NETSTRUCTER_KEY}, the first start creates
        the default key file with mode 0600 in a directory with mode 0700;
        the next start reuses it.
        """
        first = self.parse()
        self.assertTrue(first.keySource is not None and first.keySource.created)
        self.assertEqual(stat.S_IMODE(self.defaultKey.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(self.defaultKey.parent.stat().st_mode), 0o700)
        self.assertEqual(first.keyring, readKeyFile(self.defaultKey))
        second = self.parse()
        self.assertTrue(second.keySource is not None and not second.keySource.created)
        self.assertEqual(second.keyring, first.keyring)

    def test_xdgConfigHome(self) -> None:
        """
        The default key file follows C{XDG_CONFIG_HOME}.
        """
        config = self.home / "xdg"
        environ = {**self.environ, "XDG_CONFIG_HOME": str(config)}
        options = self.parse(environ=environ)
        self.assertTrue((config / "netstructer" / "key").exists())
        self.assertFalse(self.defaultKey.exists())
        assert options.keySource is not None
        self.assertEqual(options.keySource.path, config / "netstructer" / "key")

    def test_creationLoggedOnce(self) -> None:
        """
        L{tap.makeService} logs the path of a key file created on this start,
        and only then.
        """
        events: list[dict[str, Any]] = []
        self.patch(tap, "_log", Logger(observer=events.append))
        tap.makeService(self.parse(), MemoryReactorClock())
        tap.makeService(self.parse(), MemoryReactorClock())
        created = [e for e in events if "Created a new key file" in e["log_format"]]
        self.assertEqual(len(created), 1)
        self.assertEqual(created[0]["path"], str(self.defaultKey))
        self.assertNotIn(self.defaultKey.read_text().splitlines()[-1], repr(events))

    def test_explicitKeyFile(self) -> None:
        """
        C{--key-file} names the key file; the default one is not created.
        """
        path, _ = self.keyFile()
        options = self.parse("--key-file", str(path))
        self.assertEqual(options.keyring, readKeyFile(path))
        self.assertFalse(self.defaultKey.exists())

    def test_environmentVariable(self) -> None:
        """
        C{NETSTRUCTER_KEY} is used when there is no C{--key-file}; the
        default key file is not created.
        """
        key = generateKey()
        environ = {**self.environ, ENVIRONMENT_VARIABLE: key.decode("ascii")}
        options = self.parse(environ=environ)
        assert options.keyring is not None and options.keySource is not None
        self.assertEqual(options.keyring, tap.Keyring([key]))
        self.assertIn(ENVIRONMENT_VARIABLE, options.keySource.description)
        self.assertFalse(self.defaultKey.exists())

    def test_keyFileWinsOverEnvironment(self) -> None:
        """
        An explicit C{--key-file} wins over C{NETSTRUCTER_KEY}.
        """
        path, key = self.keyFile()
        environ = {**self.environ, ENVIRONMENT_VARIABLE: generateKey().decode("ascii")}
        options = self.parse("--key-file", str(path), environ=environ)
        self.assertEqual(options.keyring, tap.Keyring([key]))

    def test_missingKeyFile(self) -> None:
        """
        A missing explicit key file stops start-up, naming the file and how
        to make one; it is not created.
        """
        path = self.home / "missing.key"
        message = self.parseError("--key-file", str(path))
        self.assertIn(str(path), message)
        self.assertIn("netstructer keygen", message)
        self.assertIn("--key-file", message)
        self.assertFalse(path.exists())

    def test_exposedKeyFile(self) -> None:
        """
        A key file readable by group or others stops start-up with the
        C{chmod 600} that fixes it.
        """
        path, _ = self.keyFile(mode=0o644)
        message = self.parseError("--key-file", str(path))
        self.assertIn(f"chmod 600 {path}", message)

    def test_exposedDefaultKeyFile(self) -> None:
        """
        The default key file gets the same checks.
        """
        self.parse()
        os.chmod(self.defaultKey, 0o640)
        message = self.parseError()
        self.assertIn(f"chmod 600 {self.defaultKey}", message)

    def test_unreadableKeyFile(self) -> None:
        """
        A key file that cannot be read (here: a directory) stops start-up,
        naming it.
        """
        message = self.parseError("--key-file", str(self.home))
        self.assertIn(str(self.home), message)

    def test_malformedKeyFile(self) -> None:
        """
        A malformed key file stops start-up, naming the file and the line,
        but not the content.
        """
        path = self.home / "bad.key"
        path.write_text("# comment\nnot-a-key-at-all\n")
        os.chmod(path, 0o600)
        message = self.parseError("--key-file", str(path))
        self.assertIn(str(path), message)
        self.assertIn("line 2", message)
        self.assertNotIn("not-a-key-at-all", message)

    def test_badEnvironmentVariable(self) -> None:
        """
        A malformed C{NETSTRUCTER_KEY} stops start-up, naming the variable
        but not its value.
        """
        environ = {**self.environ, ENVIRONMENT_VARIABLE: "hunter2"}
        error = self.assertRaises(usage.UsageError, self.parse, environ=environ)
        self.assertIn(ENVIRONMENT_VARIABLE, str(error))
        self.assertNotIn("hunter2", str(error))


class HandlerOptionTests(_TemporaryHome):
    """
    Tests for C{--handler} errors.
    """

    def test_unknownName(self) -> None:
        """
        A name that is neither built in nor C{module:name} is refused.
        """
        message = self.parseError("--handler", "shout")
        self.assertIn("--handler shout", message)
        self.assertIn("echo", message)

    def test_importFailure(self) -> None:
        """
        A module that cannot be imported is a clear start-up error.
        """
        message = self.parseError("--handler", "no_such_module_here:Handler")
        self.assertIn("--handler", message)
        self.assertIn("no_such_module_here", message)

    def test_missingAttribute(self) -> None:
        """
        A missing attribute is a clear start-up error.
        """
        message = self.parseError("--handler", "netstructer.handlers:NoSuchHandler")
        self.assertIn("NoSuchHandler", message)

    def test_noKeyCreatedOnError(self) -> None:
        """
        A start-up error found in the options leaves no new key file behind
        (it would never be announced).
        """
        self.parseError("--handler", "no_such_module_here:Handler")
        self.assertFalse(self.defaultKey.exists())

    def test_notAHandler(self) -> None:
        """
        An attribute that is not a handler is refused.
        """
        message = self.parseError("--handler", "netstructer.tap:DEFAULT_PORT")
        self.assertIn("not a handler", message)


class TLSOptionTests(_TemporaryHome):
    """
    Tests for C{--tls-cert}, C{--tls-key} and C{--tls-ca}.
    """

    def setUp(self) -> None:
        """
        Make certificates.
        """
        super().setUp()
        self.certificates = makeCertificates(self.home)

    def test_certificateAndKey(self) -> None:
        """
        C{--tls-cert} and C{--tls-key} make TLS options; so does a file
        holding both.
        """
        options = self.parse(
            "--tls-cert",
            str(self.certificates["serverCert"]),
            "--tls-key",
            str(self.certificates["serverKey"]),
        )
        self.assertIsNotNone(options.tlsOptions)
        self.assertIsNotNone(self.parse("--tls-cert", str(self.certificates["server"])).tlsOptions)

    def test_clientCertificatesRequired(self) -> None:
        """
        C{--tls-ca} makes the server require client certificates.
        """
        from OpenSSL import SSL

        options = self.parse(
            "--tls-cert",
            str(self.certificates["server"]),
            "--tls-ca",
            str(self.certificates["ca"]),
        )
        mode = options.tlsOptions.getContext().get_verify_mode()
        self.assertTrue(mode & SSL.VERIFY_PEER)
        self.assertTrue(mode & SSL.VERIFY_FAIL_IF_NO_PEER_CERT)

    def test_needsCertificate(self) -> None:
        """
        C{--tls-ca} or C{--tls-key} without C{--tls-cert} is refused.
        """
        for option in ("--tls-ca", "--tls-key"):
            message = self.parseError(option, str(self.certificates["ca"]))
            self.assertIn("needs --tls-cert", message)

    def test_missingFile(self) -> None:
        """
        A certificate file that cannot be read is refused, naming the option.
        """
        missing = str(self.home / "missing.pem")
        self.assertIn("--tls-cert", self.parseError("--tls-cert", missing))
        message = self.parseError(
            "--tls-cert", str(self.certificates["server"]), "--tls-ca", missing
        )
        self.assertIn("--tls-ca", message)

    def test_noKey(self) -> None:
        """
        A certificate without its key is refused, saying to give the key.
        """
        message = self.parseError("--tls-cert", str(self.certificates["serverCert"]))
        self.assertIn("--tls-key", message)

    def test_keyMismatch(self) -> None:
        """
        A key that does not belong to the certificate is refused at start-up.
        """
        message = self.parseError(
            "--tls-cert",
            str(self.certificates["serverCert"]),
            "--tls-key",
            str(self.certificates["clientKey"]),
        )
        self.assertIn("does not match", message)

    def test_notPEM(self) -> None:
        """
        A file holding no certificate is refused.
        """
        notPEM = self.home / "not.pem"
        notPEM.write_text("hello\n")
        self.assertIn("no PEM certificate", self.parseError("--tls-cert", str(notPEM)))

    def test_notWithSSLEndpoint(self) -> None:
        """
        C{--tls-cert} with an C{ssl:} endpoint would be TLS twice: refused.
        """
        server = str(self.certificates["server"])
        message = self.parseError("--port", f"ssl:5000:privateKey={server}", "--tls-cert", server)
        self.assertIn("not both", message)

    def test_sslDescriptionChecked(self) -> None:
        """
        An C{ssl:} endpoint naming a certificate file that does not exist is
        refused at start-up, naming the option.
        """
        message = self.parseError("--port", f"ssl:5000:privateKey={self.home}/nope.pem")
        self.assertIn("--port", message)
        self.assertIn("nope.pem", message)


class MakeServiceTests(_TemporaryHome):
    """
    Tests for L{tap.makeService}.
    """

    def test_server(self) -> None:
        """
        The service is a L{Server} with the options' key, handler and
        settings, and it listens on C{--port} when started.
        """
        reactor = MemoryReactorClock()
        options = self.parse("--port", "6000", "--max-sessions", "7", "--handler", "log")
        service = tap.makeService(options, reactor)
        self.assertIsInstance(service, Server)
        assert isinstance(service, Server)
        self.assertIs(service.handler, options.handler)
        self.assertEqual(service.config.keyring, options.keyring)
        self.assertEqual(service.registry.maxSessions, 7)
        self.assertEqual(reactor.tcpServers, [])
        service.privilegedStartService()
        service.startService()
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (6000, "127.0.0.1"))
        self.assertIs(factory, service.factory)
        self.successResultOf(service.stopService())

    def test_severalEndpointsShareOneFactory(self) -> None:
        """
        With C{--listen}, every endpoint serves the same factory, so one
        registry and its limits cover them all.
        """
        reactor = MemoryReactorClock()
        socket = str(self.home / "ns.sock")
        options = self.parse("--listen", f"unix:{socket}", "--listen", "6001")
        service = tap.makeService(options, reactor)
        assert isinstance(service, Server)
        extras = [s for s in service if isinstance(s, StreamServerEndpointService)]
        self.assertEqual(len(extras), 2)
        service.privilegedStartService()
        service.startService()
        self.assertEqual(
            sorted((port, interface) for port, _, _, interface in reactor.tcpServers),
            [(5000, "127.0.0.1"), (6001, "127.0.0.1")],
        )
        self.assertEqual([address for address, *_ in reactor.unixServers], [socket])
        factories = [f for _, f, *_ in reactor.tcpServers] + [f for _, f, *_ in reactor.unixServers]
        for factory in factories:
            self.assertIs(factory, service.factory)
        self.successResultOf(service.stopService())

    def test_tlsWrapsEveryEndpoint(self) -> None:
        """
        With C{--tls-cert}, every endpoint speaks TLS around the server's
        factory.
        """
        certificates = makeCertificates(self.home)
        reactor = MemoryReactorClock()
        options = self.parse("--tls-cert", str(certificates["server"]), "--listen", "6001")
        service = tap.makeService(options, reactor)
        assert isinstance(service, Server)
        service.privilegedStartService()
        for _, factory, _, _ in reactor.tcpServers:
            self.assertIsInstance(factory, TLSMemoryBIOFactory)
            self.assertIs(factory.wrappedFactory, service.factory)
        self.assertEqual(len(reactor.tcpServers), 2)

    def test_portInUse(self) -> None:
        """
        Under C{twistd}, a port that is in use stops start-up with a
        L{ServerInitializeError} saying so.
        """
        inUse = CannotListenError("127.0.0.1", 5000, OSError(errno.EADDRINUSE, "in use"))
        reactor = RaisingMemoryReactor(listenException=inUse)
        service = tap.makeService(self.parse(), reactor)
        error = self.assertRaises(ServerInitializeError, service.privilegedStartService)
        self.assertIn("port 5000 is already in use", str(error))

    def test_unparsedOptions(self) -> None:
        """
        L{tap.makeService} needs parsed options.
        """
        self.assertRaises(ValueError, tap.makeService, tap.Options(), MemoryReactorClock())


class ParseSizeTests(SynchronousTestCase):
    """
    Tests for L{tap.parseSize}.
    """

    def test_units(self) -> None:
        """
        Units are powers of 1024, in any case, with or without C{iB}/C{B}.
        """
        for text, size in [
            ("1", 1),
            ("1k", 1024),
            ("1K", 1024),
            ("1KiB", 1024),
            ("2m", 2 * 1024**2),
            ("2MB", 2 * 1024**2),
            (" 1 G ", 1024**3),
        ]:
            self.assertEqual(tap.parseSize(text), size, text)

    def test_refused(self) -> None:
        """
        Sizes that are not whole, zero, too large or with unknown units are
        refused, naming the option.
        """
        for text in ("", "1.5M", "0", "-1", "1T", "3G", "M"):
            error = self.assertRaises(ValueError, tap.parseSize, text, "--size")
            self.assertIn("--size", str(error))


class PluginTests(SynchronousTestCase):
    """
    Tests for the plugin in C{twisted/plugins/netstructer_plugin.py}.
    """

    def setUp(self) -> None:
        """
        Make sure the repository's plugin directory is searched, as it is
        when the repository root is on C{sys.path} before C{twisted.plugins}
        is imported (or after C{pip install}).
        """
        import twisted.plugins

        pluginDirectory = str(REPO / "twisted" / "plugins")
        if pluginDirectory not in twisted.plugins.__path__:
            self.patch(twisted.plugins, "__path__", [*twisted.plugins.__path__, pluginDirectory])

    def test_discovered(self) -> None:
        """
        C{getPlugins(IServiceMaker)} finds one C{netstructer} service maker,
        which provides L{IServiceMaker} and L{IPlugin} and names
        L{netstructer.tap}'s L{Options} and L{makeService}.
        """
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "netstructer"]
        self.assertEqual(len(makers), 1)
        [maker] = makers
        self.assertTrue(verifyObject(IServiceMaker, maker))
        self.assertTrue(verifyObject(IPlugin, maker))
        self.assertIs(maker.options, tap.Options)
        self.assertIs(maker.makeService, tap.makeService)
        self.assertEqual(maker.name, "NetStructer server")

    def test_notAPackage(self) -> None:
        """
        Neither C{twisted/} nor C{twisted/plugins/} is a Python package in
        the repository: Twisted's plugin directory must not be one.
        """
        self.assertFalse((REPO / "twisted" / "__init__.py").exists())
        self.assertFalse((REPO / "twisted" / "plugins" / "__init__.py").exists())
