"""Secrets: router passwords, SNMP communities and keys, webhook HMAC keys.

The config only names a secret (``password_secret = "routers/noc"``); the
value lives in the OS keyring, or, on a headless host with no keyring
service, in an encrypted file (Fernet, key derived with scrypt from the
passphrase in ``ISPVM_SECRETS_PASSPHRASE`` or a systemd credential). Values are never printed,
logged or shown after entry: every value a source hands out is registered
with ``redact`` so that no log line can carry it, and sources' reprs show
names only.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TextIO

from ispvm_tui import redact
from ispvm_tui.fileperms import create_private_file, loose_mode_warning, make_private_dir

KEYRING_SERVICE = "ispvm"
PASSPHRASE_ENV = "ISPVM_SECRETS_PASSPHRASE"
# Under systemd, LoadCredential=ispvm-secrets-passphrase:FILE hands the passphrase over as a file only the
# service can read ($CREDENTIALS_DIRECTORY), instead of an environment variable other tools can show.
PASSPHRASE_CREDENTIAL = "ispvm-secrets-passphrase"
DEFAULT_FILE = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "ispvm" / "secrets.enc"


class SecretError(Exception):
    pass


class SecretSource(Protocol):
    def get(self, name: str) -> str | None: ...


class StaticSecrets:
    """In-memory secrets: the built-in lab's own credentials, and tests."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def get(self, name: str) -> str | None:
        value = self._values.get(name)
        redact.register(value)
        return value

    def values(self) -> dict[str, str]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"StaticSecrets({sorted(self._values)} = ***)"


class KeyringSecrets:
    def __init__(self, service: str = KEYRING_SERVICE) -> None:
        self.service = service

    def available(self) -> bool:
        try:
            import keyring
            from keyring.backends import fail

            return not isinstance(keyring.get_keyring(), fail.Keyring)
        except Exception:
            return False

    def get(self, name: str) -> str | None:
        if not self.available():
            return None
        import keyring

        try:
            value = keyring.get_password(self.service, name)
        except Exception as exc:  # a locked or broken keyring must not crash polling
            raise SecretError(f"keyring lookup of {name!r} failed: {type(exc).__name__}") from None
        redact.register(value)
        return value

    def set(self, name: str, value: str) -> None:
        import keyring

        keyring.set_password(self.service, name, value)


def given_passphrase() -> str | None:
    """The encrypted file's passphrase: ``ISPVM_SECRETS_PASSPHRASE``, else the systemd credential."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / PASSPHRASE_CREDENTIAL
    try:
        value = path.read_text().rstrip("\r\n")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SecretError(f"cannot read the credential {path}: {exc.strerror or exc}") from None
    redact.register(value)
    return value or None


class EncryptedFileSecrets:
    """A JSON map encrypted with Fernet; the key comes from a passphrase via scrypt."""

    def __init__(self, path: Path = DEFAULT_FILE, passphrase: str | None = None) -> None:
        self.path = path
        self._passphrase = passphrase
        # scrypt costs 0.1-0.2 s of CPU on purpose: derive once per (salt, passphrase) and decrypt once per
        # version of the file, not once per lookup (1,000 devices used to mean minutes before the first poll).
        self._keys: dict[tuple[bytes, str], bytes] = {}
        self._loaded: tuple[tuple[int, int, int], bytes, dict[str, str]] | None = None
        self._lock = threading.Lock()
        self.decryptions = 0  # times the file was really decrypted (each costs a scrypt derivation or less)

    def _key(self, salt: bytes) -> bytes:
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        passphrase = self._passphrase or given_passphrase()
        if not passphrase:
            raise SecretError(f"{self.path} is encrypted: set {PASSPHRASE_ENV} to read it (or, under systemd, "
                              f"the credential {PASSPHRASE_CREDENTIAL})")
        key = self._keys.get((salt, passphrase))
        if key is None:
            key = base64.urlsafe_b64encode(Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase.encode()))
            self._keys = {(salt, passphrase): key}  # one passphrase in use at a time: keep only the last
        return key

    def _load(self) -> tuple[bytes, dict[str, str]]:
        """The current key's salt and every value. A passphrase that opens only the previous key version
        (a rotation not finished: ``rotate``) still reads, so a process started before the rotation, or
        one whose credential was not updated yet, keeps working."""
        from cryptography.fernet import Fernet, InvalidToken

        try:
            st = self.path.stat()
        except FileNotFoundError:
            return os.urandom(16), {}
        version = (st.st_ino, st.st_mtime_ns, st.st_size)  # `secret set` replaces the file: a new inode
        with self._lock:
            if self._loaded is not None and self._loaded[0] == version:
                return self._loaded[1], dict(self._loaded[2])
            raw = json.loads(self.path.read_text())
            salt = base64.b64decode(raw["salt"])
            try:
                data = Fernet(self._key(salt)).decrypt(raw["token"].encode())
            except InvalidToken:
                previous = raw.get("previous")
                if not previous:
                    raise SecretError(f"cannot decrypt {self.path}: wrong passphrase") from None
                salt = base64.b64decode(previous["salt"])  # which key opened it: set() and rotate() refuse it
                try:
                    data = Fernet(self._key(salt)).decrypt(previous["token"].encode())
                except InvalidToken:
                    raise SecretError(f"cannot decrypt {self.path}: wrong passphrase (for key version "
                                      f"{raw.get('key_version', 1)} and the previous one)") from None
            self.decryptions += 1
            values = json.loads(data)
            self._loaded = (version, salt, values)
            return salt, dict(values)

    def key_versions(self) -> tuple[int, int | None]:
        """(the current key version, the previous one still readable or None). Reads no secret."""
        raw = json.loads(self.path.read_text())
        previous = raw.get("previous")
        return int(raw.get("key_version", 1)), int(previous["key_version"]) if previous else None

    def _write(self, body: dict[str, object]) -> None:
        make_private_dir(self.path.parent)
        tmp = self.path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)  # a leftover could have any mode: start from a fresh 0600 file
        create_private_file(tmp)
        with tmp.open("w") as fh:
            json.dump(body, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def rotate(self, new_passphrase: str) -> int:
        """Re-encrypt every value under ``new_passphrase`` (a new salt, the next key version), keeping the
        current encryption as the previous key version: whoever still has the old passphrase reads on until
        ``finish_rotation``. Needs the current passphrase (as for reading). The new key version."""
        from cryptography.fernet import Fernet

        if not new_passphrase:
            raise SecretError("the new passphrase is empty")
        raw = json.loads(self.path.read_text())
        salt, values = self._load()
        if salt != base64.b64decode(raw["salt"]):
            raise SecretError(f"that passphrase opens only the previous key version of {self.path}: rotate with "
                              "the current one")
        if (self._passphrase or given_passphrase()) == new_passphrase:
            raise SecretError("the new passphrase is the current one")
        current = int(raw.get("key_version", 1))
        salt = os.urandom(16)
        rotated = EncryptedFileSecrets(self.path, passphrase=new_passphrase)
        token = Fernet(rotated._key(salt)).encrypt(json.dumps(values).encode()).decode()
        self._write({"key_version": current + 1, "salt": base64.b64encode(salt).decode(), "token": token,
                     "previous": {"key_version": current, "salt": raw["salt"], "token": raw["token"]}})
        return current + 1

    def finish_rotation(self) -> bool:
        """Drop the previous key version (the old passphrase reads nothing any more); False when none."""
        raw = json.loads(self.path.read_text())
        if not raw.pop("previous", None):
            return False
        salt, _ = self._load()  # only a holder of the current passphrase may finish
        if salt != base64.b64decode(raw["salt"]):
            raise SecretError("that passphrase opens only the previous key version: finish with the current one")
        self._write(raw)
        return True

    def get(self, name: str) -> str | None:
        if not self.path.exists():
            return None
        value = self._load()[1].get(name)
        redact.register(value)
        return value

    def permission_warnings(self) -> list[str]:
        """The file and its directory, when others may use them (encrypted, but still private)."""
        found = (loose_mode_warning(self.path, "encrypted secrets"),
                 loose_mode_warning(self.path.parent, "the encrypted secrets file"))
        return [w for w in found if w]

    def set(self, name: str, value: str) -> None:
        from cryptography.fernet import Fernet

        salt, values = self._load()
        values[name] = value
        key_version = 1
        if self.path.exists():
            raw = json.loads(self.path.read_text())
            key_version = int(raw.get("key_version", 1))
            if base64.b64decode(raw["salt"]) != salt:
                raise SecretError(f"{self.path} was rotated to key version {key_version}: store secrets with "
                                  "the new passphrase")
        # The previous key version, if a rotation is under way, is dropped: it would hand the old passphrase
        # a stale copy (an old password) of what changed here.
        token = Fernet(self._key(salt)).encrypt(json.dumps(values).encode()).decode()
        self._write({"key_version": key_version, "salt": base64.b64encode(salt).decode(), "token": token})


class ChainSecrets:
    """First source that knows the name wins."""

    def __init__(self, *sources: SecretSource) -> None:
        self.sources = sources

    def get(self, name: str) -> str | None:
        for source in self.sources:
            value = source.get(name)
            if value is not None:
                return value
        return None


class AuditedSecrets:
    """Tells ``on_read(name, found)`` of every lookup it passes to its source (the name only, never the
    value): [ispvm].audit_secret_reads, the engine's audit of every use of a secret."""

    def __init__(self, source: SecretSource, on_read: Callable[[str, bool], None]) -> None:
        self.source = source
        self.on_read = on_read

    def get(self, name: str) -> str | None:
        value = self.source.get(name)
        self.on_read(name, value is not None)
        return value

    def __repr__(self) -> str:
        return "AuditedSecrets(***)"


class MemoSecrets:
    """Each name looked up once: a fleet shares a few credentials, and a keyring over D-Bus or the
    encrypted file costs far more per lookup than a dictionary. The engine reads its secrets while
    starting (a changed secret needs a restart either way). Errors are not remembered."""

    def __init__(self, source: SecretSource) -> None:
        self.source = source
        self._values: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        with self._lock:
            if name in self._values:
                return self._values[name]
        value = self.source.get(name)
        with self._lock:
            self._values[name] = value
        return value

    def __repr__(self) -> str:
        return f"MemoSecrets({len(self._values)} names = ***)"


def default_secrets() -> ChainSecrets:
    return ChainSecrets(KeyringSecrets(), EncryptedFileSecrets())


def read_secret(label: str, stdin: TextIO | None = None, stderr: TextIO | None = None) -> str:
    """Ask for a secret without echoing it; from a pipe, read one line of stdin instead.

    ``getpass`` prefers /dev/tty even when stdin is a pipe, so a piped value would be
    ignored (or the process would wait on the terminal): the pipe case is handled here.
    """
    stdin = stdin or sys.stdin
    stderr = stderr or sys.stderr
    try:
        if stdin.isatty():
            value = getpass.getpass(f"{label}: ", stream=stderr)
        else:
            stderr.write(f"{label}: (reading stdin)\n")
            line = stdin.readline()
            if not line:
                raise SecretError(f"no {label} given: stdin is empty")
            value = line.rstrip("\r\n")
    except (EOFError, KeyboardInterrupt):
        raise SecretError(f"no {label} given") from None
    if not value:
        raise SecretError(f"empty {label}")
    redact.register(value)
    return value
