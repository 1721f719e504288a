# -*- test-case-name: tests.test_keyreload -*-
"""
Reloading a server's keys without a restart: what a reload changes.

A L{KeyReloader} holds the keyring a server accepts now and, if the server
was started from one, the key file it came from.  L{KeyReloader.reload}
reads the file again (or takes a keyring given to it) and answers with a
L{KeyReload}: the new keyring, the keys added and removed, and, for any
session's L{KeyIdentity}, whether the new keyring revokes it.  A file that
cannot be read or parsed raises L{KeyFileError} and leaves the current
keyring in place, so a typo in the key file never locks every client out.

A key is I{revoked} when no key of the new keyring has both its
fingerprint and its name: removing a line revokes its sessions, and so does
renaming the key on it (the sessions were admitted under the old name).

The servers (L{netstructer.server.Server}, the blocking server, and
C{twistd netstructer} on C{SIGHUP}) apply a reload: new connections use the
new keyring at once, and the sessions it revokes are closed with the reason
C{"key revoked"}; nothing else is touched.

No I/O other than reading the key file, no Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass

from netstructer.keys import KeyIdentity, Keyring, StrPath, readKeyFile

__all__ = ["KeyReload", "KeyReloader"]


@dataclass(frozen=True)
class KeyReload:
    """
    What one reload changed.

    @ivar keyring: The keyring in force from now on.
    @ivar added: The keys (with their names) the new keyring accepts and the
        old one did not.
    @ivar removed: The keys (with their names) the old keyring accepted and
        the new one does not: their sessions are revoked.
    """

    keyring: Keyring
    added: tuple[KeyIdentity, ...]
    removed: tuple[KeyIdentity, ...]

    def revokes(self, identity: KeyIdentity | None) -> bool:
        """
        @param identity: The key a session authenticated with, or L{None} for
            a session that recorded none.
        @return: Whether that session must close: its key (under its name)
            is not on the new keyring.
        """
        return identity is not None and not self.keyring.accepts(identity)

    def describe(self) -> str:
        """
        @return: A one-line summary for a log: how many keys, added and
            removed, with the removed keys' names and IDs (never key
            material).
        """
        removed = ", ".join(f"{each.name or 'anonymous'} {each.keyId}" for each in self.removed)
        return f"{len(self.keyring)} keys, {len(self.added)} added, {len(self.removed)} removed" + (
            f" ({removed})" if removed else ""
        )


def _difference(keys: tuple[KeyIdentity, ...], other: Keyring) -> tuple[KeyIdentity, ...]:
    """
    @return: The keys of C{keys} that C{other} does not accept.
    """
    return tuple(each for each in keys if not other.accepts(each))


class KeyReloader:
    """
    The keyring a server accepts now, and how to reload it.

    @ivar keyring: The keyring in force.
    @ivar path: The key file L{reload} reads, or L{None} if the keys were
        given directly.
    """

    def __init__(self, keyring: Keyring, path: StrPath | None = None) -> None:
        """
        @param keyring: The keyring in force at start.
        @param path: The key file it was read from, if any.
        """
        self.keyring = keyring
        self.path = path

    def reload(self, keyring: Keyring | None = None) -> KeyReload:
        """
        Replace the keyring: with C{keyring} if given, else by reading the key
        file again.

        @param keyring: The new keys, or L{None} to read the key file.
        @return: What changed.
        @raise KeyFileError: The key file is missing, unsafe or malformed;
            the keyring in force is kept.
        @raise ValueError: Neither C{keyring} nor a key file is known.
        """
        if keyring is None:
            if self.path is None:
                raise ValueError(
                    "this server's keys were not read from a key file: pass the new"
                    " keyring to reloadKeys(), or start the server with keyFile="
                )
            keyring = readKeyFile(self.path)
        old, self.keyring = self.keyring, keyring
        return KeyReload(
            keyring, _difference(keyring.identities(), old), _difference(old.identities(), keyring)
        )
