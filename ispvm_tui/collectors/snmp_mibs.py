"""What the SNMP collector asks for: OIDs, the tables it walks and the MIB enumerations it reads.

IF-MIB (ifTable, ifXTable), HOST-RESOURCES-MIB (processors, storage),
MIKROTIK-MIB (health scalars, mtxrGaugeTable, wireless registrations) and the
optional LLDP-MIB, BGP4-MIB and OSPF-MIB, each as a ``_Table`` of columns
walked together. Plain data: nothing here sends a request or decodes a reply.
Names with a leading underscore are shared by the ``collectors/snmp*.py``
modules only.
"""

from __future__ import annotations

from dataclasses import dataclass

Oid = tuple[int, ...]


_IF_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
_HR_STORAGE_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 25, 2, 3, 1)
_MTXR_HEALTH: Oid = (1, 3, 6, 1, 4, 1, 14988, 1, 1, 3)
_MTXR_GAUGE_ENTRY: Oid = (*_MTXR_HEALTH, 100, 1)
_HR_STORAGE_TYPES = (1, 3, 6, 1, 2, 1, 25, 2, 1)
_HR_STORAGE_RAM = "1.3.6.1.2.1.25.2.1.2"
# hrStorageType -> StorageUse.kind: hrStorageRam(2), hrStorageFixedDisk(4); the rest is "other".
_STORAGE_KINDS = {(*_HR_STORAGE_TYPES, 2): "ram", (*_HR_STORAGE_TYPES, 4): "disk"}
_MIKROTIK_ENTERPRISE = "1.3.6.1.4.1.14988."

_SYSTEM_OIDS: dict[str, Oid] = {
    "descr": (1, 3, 6, 1, 2, 1, 1, 1, 0),
    "object_id": (1, 3, 6, 1, 2, 1, 1, 2, 0),
    "uptime": (1, 3, 6, 1, 2, 1, 1, 3, 0),
    "name": (1, 3, 6, 1, 2, 1, 1, 5, 0),
    "if_number": (1, 3, 6, 1, 2, 1, 2, 1, 0),  # sizes the interface walks
    # MIKROTIK-MIB mtxrLicVersion / mtxrBoardName: noSuchObject elsewhere, harmless.
    "version": (1, 3, 6, 1, 4, 1, 14988, 1, 1, 4, 4, 0),
    "board": (1, 3, 6, 1, 4, 1, 14988, 1, 1, 7, 9, 0),
    # Classic MIKROTIK-MIB health scalars, in tenths: mtxrHlVoltage, mtxrHlTemperature,
    # mtxrHlProcessorTemperature.
    "voltage": (*_MTXR_HEALTH, 8, 0),
    "temperature": (*_MTXR_HEALTH, 10, 0),
    "cpu_temperature": (*_MTXR_HEALTH, 11, 0),
}


@dataclass(frozen=True)
class _Table:
    """Columns walked together; ``family`` is the stale key when it fails.

    ``rows`` is the row count to expect (None: one per interface, from ifNumber):
    asking for just one more row than that ends most walks in a single request
    without fetching dozens of objects past the table's end.
    """

    label: str
    family: str
    columns: dict[str, Oid]
    rows: int | None = None


_IF_TABLE = _Table(
    "ifTable",
    "interfaces",
    {
        "descr": (*_IF_ENTRY, 2),
        "type": (*_IF_ENTRY, 3),
        "mtu": (*_IF_ENTRY, 4),
        "speed": (*_IF_ENTRY, 5),
        "mac": (*_IF_ENTRY, 6),
        "admin": (*_IF_ENTRY, 7),
        "oper": (*_IF_ENTRY, 8),
        # Counter32 in every agent (IF-MIB has no 64-bit errors or discards), walked with the rest
        # of the row so they cost no extra round trip.
        "in_discards": (*_IF_ENTRY, 13),
        "in_errors": (*_IF_ENTRY, 14),
        "out_discards": (*_IF_ENTRY, 19),
        "out_errors": (*_IF_ENTRY, 20),
    },
)
_IFX_TABLE = _Table(
    "ifXTable",
    "interfaces",
    {
        "name": (*_IFX_ENTRY, 1),
        "hc_in_octets": (*_IFX_ENTRY, 6),
        "hc_in_ucast": (*_IFX_ENTRY, 7),
        "hc_in_mcast": (*_IFX_ENTRY, 8),
        "hc_in_bcast": (*_IFX_ENTRY, 9),
        "hc_out_octets": (*_IFX_ENTRY, 10),
        "hc_out_ucast": (*_IFX_ENTRY, 11),
        "hc_out_mcast": (*_IFX_ENTRY, 12),
        "hc_out_bcast": (*_IFX_ENTRY, 13),
        "high_speed": (*_IFX_ENTRY, 15),
        "alias": (*_IFX_ENTRY, 18),
    },
)
# Only walked for interfaces without 64-bit counters (SNMPv1 never has them).
_IF32_TABLE = _Table(
    "ifTable counters",
    "interfaces",
    {
        "in_octets": (*_IF_ENTRY, 10),
        "in_ucast": (*_IF_ENTRY, 11),
        "in_nucast": (*_IF_ENTRY, 12),
        "out_octets": (*_IF_ENTRY, 16),
        "out_ucast": (*_IF_ENTRY, 17),
        "out_nucast": (*_IF_ENTRY, 18),
        "in_mcast": (*_IFX_ENTRY, 2),
        "in_bcast": (*_IFX_ENTRY, 3),
        "out_mcast": (*_IFX_ENTRY, 4),
        "out_bcast": (*_IFX_ENTRY, 5),
    },
)
_HR_PROCESSOR_TABLE = _Table("hrProcessorTable", "cpu", {"load": (1, 3, 6, 1, 2, 1, 25, 3, 3, 1, 2)}, rows=4)
_HR_STORAGE_TABLE = _Table(
    "hrStorageTable",
    "memory",
    {
        "type": (*_HR_STORAGE_ENTRY, 2),
        "descr": (*_HR_STORAGE_ENTRY, 3),
        "units": (*_HR_STORAGE_ENTRY, 4),
        "size": (*_HR_STORAGE_ENTRY, 5),
        "used": (*_HR_STORAGE_ENTRY, 6),
    },
    rows=3,  # RouterOS: main memory, system disk, tmpfs
)
# MIKROTIK-MIB mtxrGaugeTable (name, value, unit): newer devices report health here.
_MTXR_GAUGE_TABLE = _Table(
    "mtxrGaugeTable",
    "health",
    {"name": (*_MTXR_GAUGE_ENTRY, 2), "value": (*_MTXR_GAUGE_ENTRY, 3), "unit": (*_MTXR_GAUGE_ENTRY, 4)},
    rows=8,
)
_GAUGE_CELSIUS = 1
_GAUGE_DECIVOLT = 3
# mtxrGaugeUnit -> (our unit, divisor): celsius(1), rpm(2), dV(3), dA(4), dW(5); status(6) is a state.
_GAUGE_UNITS: dict[int, tuple[str, int]] = {1: ("C", 1), 2: ("RPM", 1), 3: ("V", 10), 4: ("A", 10), 5: ("W", 10)}
_GAUGE_STATUS = 6
_GAUGE_STATES = {0: "ok", 1: "fail"}


@dataclass(frozen=True)
class _HealthScalar:
    """A classic mtxrHealth scalar, named as RouterOS v6 /system/health names it."""

    name: str
    number: int  # the object is mtxrHealth.<number>.0
    unit: str | None  # None: a MIKROTIK-MIB BoolValue, true(1) meaning the PSU is ok
    divisor: int = 1

    @property
    def oid(self) -> Oid:
        return (*_MTXR_HEALTH, self.number, 0)


# Voltage, Temperature and Power are "d-1" (tenths) in MIKROTIK-MIB, mtxrHlCurrent is mA.
# mtxrHlProcessorFrequency (14) is no health reading; 1-7 are from RouterOS 2/3 era boards.
_HEALTH_SCALARS = (
    _HealthScalar("voltage", 8, "V", 10),
    _HealthScalar("temperature", 10, "C", 10),
    _HealthScalar("cpu-temperature", 11, "C", 10),
    _HealthScalar("power-consumption", 12, "W", 10),
    _HealthScalar("current", 13, "A", 1000),
    _HealthScalar("psu1-state", 15, None),
    _HealthScalar("psu2-state", 16, None),
    _HealthScalar("fan1-speed", 17, "RPM"),
    _HealthScalar("fan2-speed", 18, "RPM"),
)
# The probe fetches the scalars the system GET does not: a GETNEXT costs nothing on
# boards without them, where SNMPv1 refuses a GET and needs a retry per missing object.
_PROBED_HEALTH = tuple(h for h in _HEALTH_SCALARS if h.oid not in _SYSTEM_OIDS.values())
# MIKROTIK-MIB mtxrDHCPLeaseCount: the leases of every DHCP server together (the MIB has no per-server count).
_MTXR_DHCP_LEASES: Oid = (1, 3, 6, 1, 4, 1, 14988, 1, 1, 6, 1, 0)

# -- optional discovery and routing MIBs ----------------------------------------
_LLDP_MIB: Oid = (1, 0, 8802, 1, 1, 2)
_LLDP_LOC_PORT_ENTRY: Oid = (*_LLDP_MIB, 1, 3, 7, 1)
_LLDP_REM_TABLE: Oid = (*_LLDP_MIB, 1, 4, 1)
_LLDP_REM_ENTRY: Oid = (*_LLDP_REM_TABLE, 1)
_LLDP_MAN_ADDR_ENTRY: Oid = (*_LLDP_MIB, 1, 4, 2, 1)
_BGP_MIB: Oid = (1, 3, 6, 1, 2, 1, 15)
_BGP_PEER_TABLE: Oid = (*_BGP_MIB, 3)
_BGP_PEER_ENTRY: Oid = (*_BGP_PEER_TABLE, 1)
_OSPF_MIB: Oid = (1, 3, 6, 1, 2, 1, 14)
_OSPF_NBR_TABLE: Oid = (*_OSPF_MIB, 10)
_OSPF_NBR_ENTRY: Oid = (*_OSPF_NBR_TABLE, 1)
_MTXR_WIRELESS: Oid = (1, 3, 6, 1, 4, 1, 14988, 1, 1, 1)
_MTXR_WL_RTAB_TABLE: Oid = (*_MTXR_WIRELESS, 2)
_MTXR_WL_RTAB_ENTRY: Oid = (*_MTXR_WL_RTAB_TABLE, 1)


@dataclass(frozen=True)
class _Optional:
    """A family read only when the probe finds a row in its table.

    ``mib`` tells "implemented, nothing to report" (an empty tuple) from "not
    implemented" (None): an agent with LLDP but no neighbours still answers
    something under the LLDP-MIB root.
    """

    mib: Oid
    table: Oid
    walk: _Table


# One walk per family even where its columns belong to different tables: a walk
# advances every column on its own, so each family costs a request or two.
# ``rows`` sizes the first walk only: later ones expect as many rows as the last.
_LLDP = _Optional(
    _LLDP_MIB,
    _LLDP_REM_TABLE,
    _Table(
        "LLDP-MIB",
        "neighbors",
        {
            "chassis_subtype": (*_LLDP_REM_ENTRY, 4),
            "chassis_id": (*_LLDP_REM_ENTRY, 5),
            "port_subtype": (*_LLDP_REM_ENTRY, 6),
            "port_id": (*_LLDP_REM_ENTRY, 7),
            "port_desc": (*_LLDP_REM_ENTRY, 8),
            "sys_name": (*_LLDP_REM_ENTRY, 9),
            "sys_desc": (*_LLDP_REM_ENTRY, 10),
            # lldpRemManAddrTable keeps the address in its index (read through the
            # lldpRemManAddrIfSubtype rows); RouterOS instead serves the two index
            # columns as readable objects, indexed like lldpRemTable.
            "man_subtype": (*_LLDP_MAN_ADDR_ENTRY, 1),
            "man_addr": (*_LLDP_MAN_ADDR_ENTRY, 2),
            "man_if_subtype": (*_LLDP_MAN_ADDR_ENTRY, 3),
        },
        rows=8,
    ),
)
_BGP = _Optional(
    _BGP_MIB,
    _BGP_PEER_TABLE,
    _Table(
        "bgpPeerTable",
        "bgp",
        {
            "local_as": (*_BGP_MIB, 2),  # bgpLocalAs.0: a scalar, so its "column" ends after one value
            "state": (*_BGP_PEER_ENTRY, 2),
            "admin": (*_BGP_PEER_ENTRY, 3),
            "remote_as": (*_BGP_PEER_ENTRY, 9),
            "established_time": (*_BGP_PEER_ENTRY, 16),
        },
        rows=4,
    ),
)
_OSPF = _Optional(
    _OSPF_MIB,
    _OSPF_NBR_TABLE,
    _Table("ospfNbrTable", "ospf", {"router_id": (*_OSPF_NBR_ENTRY, 3), "state": (*_OSPF_NBR_ENTRY, 6)}, rows=4),
)
# MIKROTIK-MIB mtxrWlRtabTable, indexed (MAC, ifIndex): the stations registered to
# the device's access points. mtxrWireless itself tells "wireless, no station"
# (an empty tuple) from a board without the wireless package (None). Walked
# only on MikroTik devices. Newer RouterOS also has signal-to-noise and tx
# strength columns; WirelessClient has no field for them, so they are not fetched.
_WIRELESS = _Optional(
    _MTXR_WIRELESS,
    _MTXR_WL_RTAB_TABLE,
    _Table(
        "mtxrWlRtabTable",
        "wireless",
        {
            "iface": (*_MTXR_WL_RTAB_ENTRY, 2),  # mtxrWlRtabIface: an ifIndex, also the index's last part
            "strength": (*_MTXR_WL_RTAB_ENTRY, 3),  # dBm
            "tx_rate": (*_MTXR_WL_RTAB_ENTRY, 8),  # bps
            "rx_rate": (*_MTXR_WL_RTAB_ENTRY, 9),
            "uptime": (*_MTXR_WL_RTAB_ENTRY, 11),  # TimeTicks
        },
        rows=16,
    ),
)
# MIKROTIK-MIB mtxrOpticalTable, indexed by ifIndex: one row per SFP/SFP+/QSFP cage (RouterOS 6.4x and
# later). Units as the MIB gives them: wavelength in hundredths of a nm, temperature in C, supply in mV,
# bias in mA, powers in thousandths of a dBm (signed). An empty cage answers zeros. MikroTik devices only.
_MTXR_OPTICAL: Oid = (1, 3, 6, 1, 4, 1, 14988, 1, 1, 19)
_MTXR_OPTICAL_TABLE: Oid = (*_MTXR_OPTICAL, 1)
_MTXR_OPTICAL_ENTRY: Oid = (*_MTXR_OPTICAL_TABLE, 1)
_OPTICS = _Optional(
    _MTXR_OPTICAL,
    _MTXR_OPTICAL_TABLE,
    _Table(
        "mtxrOpticalTable",
        "optics",
        {
            "name": (*_MTXR_OPTICAL_ENTRY, 2),
            "rx_loss": (*_MTXR_OPTICAL_ENTRY, 3),
            "tx_fault": (*_MTXR_OPTICAL_ENTRY, 4),
            "wavelength": (*_MTXR_OPTICAL_ENTRY, 5),
            "temperature": (*_MTXR_OPTICAL_ENTRY, 6),
            "supply": (*_MTXR_OPTICAL_ENTRY, 7),
            "bias": (*_MTXR_OPTICAL_ENTRY, 8),
            "tx_power": (*_MTXR_OPTICAL_ENTRY, 9),
            "rx_power": (*_MTXR_OPTICAL_ENTRY, 10),
        },
        rows=4,
    ),
)
# MIKROTIK-MIB mtxrLTEModemTable, indexed by ifIndex: one row per LTE interface. RSSI and RSRP in dBm,
# RSRQ and SINR in dB (signed), the cell id, and the access technology as the modem words it.
_MTXR_LTE: Oid = (1, 3, 6, 1, 4, 1, 14988, 1, 1, 16)
_MTXR_LTE_TABLE: Oid = (*_MTXR_LTE, 1)
_MTXR_LTE_ENTRY: Oid = (*_MTXR_LTE_TABLE, 1)
_LTE = _Optional(
    _MTXR_LTE,
    _MTXR_LTE_TABLE,
    _Table(
        "mtxrLTEModemTable",
        "lte",
        {
            "rssi": (*_MTXR_LTE_ENTRY, 2),
            "rsrq": (*_MTXR_LTE_ENTRY, 3),
            "rsrp": (*_MTXR_LTE_ENTRY, 4),
            "cell_id": (*_MTXR_LTE_ENTRY, 5),
            "sinr": (*_MTXR_LTE_ENTRY, 7),
            "technology": (*_MTXR_LTE_ENTRY, 14),
        },
        rows=2,
    ),
)
_OPTIONALS = (_LLDP, _BGP, _OSPF, _WIRELESS, _OPTICS, _LTE)
_MIKROTIK_ONLY = (_WIRELESS, _OPTICS, _LTE)
# lldpLocPortTable: how the device itself names a port. Read only for the ports
# neighbours were seen on: a switch has dozens of rows, nearly all unneeded.
_LLDP_LOC_COLUMNS = {
    "loc_subtype": (*_LLDP_LOC_PORT_ENTRY, 2),
    "loc_id": (*_LLDP_LOC_PORT_ENTRY, 3),
    "loc_desc": (*_LLDP_LOC_PORT_ENTRY, 4),
}

# bgpPeerState and ospfNbrState as the words the RouterOS collector reports, so both agree.
_BGP_STATES = {1: "idle", 2: "connect", 3: "active", 4: "opensent", 5: "openconfirm", 6: "established"}
_BGP_ESTABLISHED = 6
_BGP_ADMIN_STOP = 1
_OSPF_STATES = {1: "down", 2: "attempt", 3: "init", 4: "2-way", 5: "exstart", 6: "exchange", 7: "loading", 8: "full"}
_OSPF_FULL = 8
# LLDP-MIB LldpChassisIdSubtype / LldpPortIdSubtype values that change how an id reads.
_CHASSIS_MAC = 4
_PORT_MAC = 3
_PORT_INTERFACE_NAME = 5
_PORT_NAMING_SUBTYPES = (1, 5, 7)  # interfaceAlias, interfaceName, local
_ADDRESS_IPV4, _ADDRESS_IPV6 = 1, 2  # IANA AddressFamilyNumbers (lldpRemManAddrSubtype)

# The lldpRemTable columns a neighbour row is found by (the walk's other columns may be empty).
_LLDP_REM_COLUMNS = ("chassis_id", "port_id", "port_desc", "sys_name", "sys_desc")

# IANA ifType -> the RouterOS interface type word, so SNMP and API agree.
_IF_TYPE_NAMES: dict[int, str] = {
    1: "other",
    6: "ether",
    23: "ppp",
    24: "loopback",
    53: "virtual",
    71: "wlan",
    131: "tunnel",
    135: "vlan",
    161: "bond",
    209: "bridge",
}

# What SNMP exposes of a device's configuration (SnmpCollector.read_config), as pseudo menus that
# engine/config_normalise.py files under "system" and "interfaces".
_CONFIG_SYSTEM_OIDS: dict[str, Oid] = {
    "name": _SYSTEM_OIDS["name"],
    "contact": (1, 3, 6, 1, 2, 1, 1, 4, 0),
    "location": (1, 3, 6, 1, 2, 1, 1, 6, 0),
}
_CONFIG_IF_COLUMNS: dict[str, Oid] = {
    "descr": (*_IF_ENTRY, 2),
    "mtu": (*_IF_ENTRY, 4),
    "admin": (*_IF_ENTRY, 7),
    "alias": (*_IFX_ENTRY, 18),
}
_ADMIN_STATUS = {1: "up", 2: "down", 3: "testing"}
