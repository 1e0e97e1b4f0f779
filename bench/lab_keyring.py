"""A keyring backend for ``bench.engine_scale --secrets keyring`` on a host without a desktop keyring.

The engine reaches it through keyring's own lookup (``PYTHON_KEYRING_BACKEND=bench.lab_keyring.LabKeyring``),
the path it takes to a real keyring. It holds only the lab's public login and community
(``LabSettings``: the lab routers listen on loopback alone) and the bench's fixed webhook key;
a real keyring's own cost per lookup (a D-Bus round trip for Secret Service) is not in it.
"""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import PasswordSetError

from ispvm_tui.lab.scenario import LabSettings

_LAB = LabSettings()
_VALUES = {
    ("ispvm", "bench/router-password"): _LAB.password,
    ("ispvm", "bench/snmp-community"): _LAB.community,
    ("ispvm", "bench/webhook-secret"): "ispvm-bench-webhook",  # bench.engine_scale.KEYRING_WEBHOOK_SECRET
}


class LabKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]  # only ever chosen by name

    def get_password(self, service: str, username: str) -> str | None:
        return _VALUES.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        raise PasswordSetError("the bench's lab keyring is read-only")

    def delete_password(self, service: str, username: str) -> None:
        raise PasswordSetError("the bench's lab keyring is read-only")
