"""The lab's addresses: every router on loopback, checked for the whole fleet before anything binds.

The lab answers its well-known login (admin / ispvm-lab) on every router, so no
lab router may ever listen where another host could reach it: each address must
be in 127.0.0.0/8 (not its broadcast address) or be ``::1``.
"""

from __future__ import annotations

import ipaddress

_LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.ip_address("::1")


class LabAddressError(ValueError):
    """A lab address that is not loopback-only."""


def is_lab_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6:
        return ip == _LOOPBACK_V6
    return ip in _LOOPBACK_V4 and ip != _LOOPBACK_V4.broadcast_address and ip != _LOOPBACK_V4.network_address


def lab_addresses(base: str, count: int) -> list[str]:
    """``base+1 .. base+count``; raises LabAddressError unless every one is loopback."""
    try:
        ip = ipaddress.ip_address(base)
    except ValueError:
        raise LabAddressError(f"address base {base!r} is not an IP address "
                              f"(the lab needs a loopback base such as 127.77.0.0)") from None
    out: list[str] = []
    for n in range(1, count + 1):
        try:
            address = str(ip + n)
        except ipaddress.AddressValueError:
            address = f"{base}+{n}"
        if not is_lab_address(address):
            last = "127.255.255.254" if ip.version == 4 else "::1"
            raise LabAddressError(
                f"address base {base} with {count} routers puts router {n} on {address}, outside the loopback "
                f"range (127.0.0.0/8 or ::1): the lab's known login must stay unreachable from other hosts; "
                f"choose a base in 127.0.0.0/8 whose last router stays at or below {last}")
        out.append(address)
    return out
