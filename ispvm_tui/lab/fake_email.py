"""A real SMTP server on loopback for the lab and the e-mail target's tests (aiosmtpd).

It runs in its own thread and event loop, listens on a port the OS picks,
speaks plain SMTP, STARTTLS or implicit TLS with a certificate made on the
spot (``self_signed``), checks AUTH LOGIN/PLAIN against a user table, records
every accepted message (envelope, parsed message, whether it came over TLS
and as whom), and can be scripted to refuse a recipient, answer DATA with a
4xx or 5xx, or stall past the client's timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A fresh key and a self-signed certificate for ``host`` (an IP SAN and ``localhost``): (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage  # parsed with the modern policy: headers decoded, get_body() works
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS)
    login: str | None  # the AUTH user, None when the client did not authenticate

    def header(self, name: str) -> str | None:
        value = self.message.get(name)
        return None if value is None else str(value)

    def text(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return "" if part is None else part.get_content()


# A scripted answer to DATA: an SMTP reply line ("451 4.3.0 try later"); ("stall", seconds): answer
# nothing for that long, then refuse; ("keep-stall", seconds): keep the mail, then stall (a lost 250).
DataScript = str | tuple[Literal["stall", "keep-stall"], float]


def _encrypted(server: SMTP) -> bool:
    transport = getattr(server, "transport", None)
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _Handler:
    def __init__(self, server: FakeSMTP) -> None:
        self.server = server

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.server.rcpt_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.server._lock:
            script = self.server._data_script.popleft() if self.server._data_script else None
            self.server.data_attempts += 1
        if isinstance(script, tuple) and script[0] == "stall":
            await asyncio.sleep(script[1])  # the client gives up first; then the mail is not kept
            return "451 4.3.0 too slow"
        if isinstance(script, str):
            return script
        raw = bytes(envelope.original_content or envelope.content or b"")
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        mail = ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), raw,
                            message_from_bytes(raw, policy=default_policy),  # type: ignore[arg-type]
                            session.ssl is not None or _encrypted(server), login)
        with self.server._lock:
            self.server._received.append(mail)
        if isinstance(script, tuple):  # "keep-stall": queued, but the 250 never reaches the client in time
            await asyncio.sleep(script[1])
        return "250 2.0.0 queued"


class _Controller(Controller):
    """aiosmtpd's Controller on a socket bound beforehand: port 0, so no guessing a free port."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class FakeSMTP:
    """``with FakeSMTP(security="starttls", cert=(cert, key), users={"noc": "pw"}) as smtp: ... smtp.port``."""

    def __init__(self, *, security: Literal["starttls", "tls", "none"] = "none",
                 cert: tuple[Path, Path] | None = None, users: dict[str, str] | None = None,
                 host: str = "127.0.0.1", auth_require_tls: bool = True,
                 exclude_auth: list[str] | None = None) -> None:
        if security != "none" and cert is None:
            raise ValueError("a TLS server needs cert=(cert, key), e.g. from self_signed()")
        self.security = security
        self.host = host
        self.users = dict(users or {})
        self.rcpt_replies: dict[str, str] = {}  # lower-cased address -> refusal reply, e.g. "550 5.1.1 no such user"
        self.data_attempts = 0
        self.auth_attempts: list[tuple[str, str, bool]] = []  # (mechanism, login, accepted)
        self._data_script: deque[DataScript] = deque()
        self._received: list[ReceivedMail] = []
        self._lock = threading.Lock()
        context = None
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(16)
        self.port: int = sock.getsockname()[1]
        # aiosmtpd counts only STARTTLS as TLS for AUTH; an implicit-TLS session is encrypted from the start.
        kwargs: dict[str, Any] = {"ready_timeout": 10.0, "timeout": 30,
                                  "auth_require_tls": auth_require_tls and security != "tls",
                                  "auth_required": bool(self.users), "auth_exclude_mechanism": exclude_auth or []}
        if self.users:
            kwargs["authenticator"] = self._authenticate
        if security == "tls":
            kwargs["ssl_context"] = context
        elif security == "starttls":
            kwargs["tls_context"] = context
        self._controller = _Controller(_Handler(self), sock, **kwargs)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and self.users.get(auth_data.login.decode()) == auth_data.password.decode())
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
        with self._lock:
            self.auth_attempts.append((mechanism, login, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> FakeSMTP:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> FakeSMTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script_data(self, *replies: DataScript) -> None:
        """The next DATA commands are answered with these, in order; after them, mail is accepted."""
        with self._lock:
            self._data_script.extend(replies)

    def received(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._received)
