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
from collections.abc import Mapping
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
                raise SecretError(f"cannot decrypt {self.path}: wrong passphrase") from None
            self.decryptions += 1
            values = json.loads(data)
            self._loaded = (version, salt, values)
            return salt, dict(values)

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
        token = Fernet(self._key(salt)).encrypt(json.dumps(values).encode()).decode()
        make_private_dir(self.path.parent)
        tmp = self.path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)  # a leftover could have any mode: start from a fresh 0600 file
        create_private_file(tmp)
        with tmp.open("w") as fh:
            json.dump({"salt": base64.b64encode(salt).decode(), "token": token}, fh)
        os.replace(tmp, self.path)


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
