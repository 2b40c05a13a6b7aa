"""A 36-port 100GbE leaf (IOS-XR names, `HundredGigE0/0/0/0` .. `/35`) as snmp_exporter's `if_mib`
module shows it, one scrape per minute for three hours, each sample stamped with its scrape time.

Written from snmp_exporter's generated `if_mib` module and client_golang's text format: a family's
series sorted by label values (`ifAlias`, `ifDescr`, `ifIndex`, `ifName`), values printed as Go's
`%g` does (`1.2e+10`). The agent numbers interfaces its own way: `ifIndex` is not the port's position
(HundredGigE0/0/0/10 is ifIndex 3). 24 ports are cabled and up; 12 have no cable (admin up, oper
down: 2, or 7 lowerLayerDown; zero octets all along); HundredGigE0/0/0/10 is shut down twice.
"""

from __future__ import annotations

import numpy as np

PORTS = 36
UNCABLED = (5, 13, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35)
UPLINKS = (22, 23, 24, 25)
SHUT = 10  # HundredGigE0/0/0/10, ifIndex 3
SHUT_MINUTES = ((40, 55), (110, 150))  # [from, to): ifAdminStatus 2
MINUTES = 180
OTHER = {"MgmtEth0/RP0/CPU0/0": 1, "Null0": 2, "Loopback0": 39}  # name -> ifIndex

HELP = {
    "ifAdminStatus": ("gauge", "The desired state of the interface - 1.3.6.1.2.1.2.2.1.7"),
    "ifHCInOctets": (
        "counter",
        "The total number of octets received on the interface, including framing characters - 1.3.6.1.2.1.31.1.1.1.6",
    ),
    "ifHCOutOctets": (
        "counter",
        "The total number of octets transmitted out of the interface, including "
        "framing characters - 1.3.6.1.2.1.31.1.1.1.10",
    ),
    "ifHighSpeed": (
        "gauge",
        "An estimate of the interface's current bandwidth in units of 1,000,000 bits "
        "per second - 1.3.6.1.2.1.31.1.1.1.15",
    ),
    "ifInDiscards": (
        "counter",
        "The number of inbound packets which were chosen to be discarded even though "
        "no errors had been detected - 1.3.6.1.2.1.2.2.1.13",
    ),
    "ifInErrors": (
        "counter",
        "For packet-oriented interfaces, the number of inbound packets that contained errors - 1.3.6.1.2.1.2.2.1.14",
    ),
    "ifLastChange": (
        "gauge",
        "The value of sysUpTime at the time the interface entered its current operational state - 1.3.6.1.2.1.2.2.1.9",
    ),
    "ifMtu": (
        "gauge",
        "The size of the largest packet which can be sent/received on the interface, "
        "specified in octets - 1.3.6.1.2.1.2.2.1.4",
    ),
    "ifOperStatus": ("gauge", "The current operational state of the interface - 1.3.6.1.2.1.2.2.1.8"),
    "ifOutDiscards": (
        "counter",
        "The number of outbound packets which were chosen to be discarded even though "
        "no errors had been detected - 1.3.6.1.2.1.2.2.1.19",
    ),
    "ifOutErrors": (
        "counter",
        "For packet-oriented interfaces, the number of outbound packets that could not "
        "be transmitted because of errors - 1.3.6.1.2.1.2.2.1.20",
    ),
    "ifType": ("gauge", "The type of interface - 1.3.6.1.2.1.2.2.1.3"),
}


def if_index(port: int) -> int:
    """The agent's ifIndex of HundredGigE0/0/0/<port>: 3..38, in no order of the ports."""
    return 3 + (port - SHUT) * 5 % PORTS


def alias(port: int) -> str:
    if port in UNCABLED:
        return ""
    if port in UPLINKS:
        return f"spine{port - UPLINKS[0] + 1} Hu0/0/0/7"
    return f"gpu-node{port + 1:02d} eth0"


def go_float(value: float) -> str:
    """A value as client_golang prints it (`strconv.FormatFloat(v, 'g', -1, 64)`)."""
    v = float(value)
    if v == 0 or abs(v) < 1e6:
        return np.format_float_positional(v, unique=True, trim="-")
    return np.format_float_scientific(v, unique=True, trim="-", exp_digits=2)


def admin_up(port: int, minute: int) -> bool:
    return port != SHUT or not any(a <= minute < b for a, b in SHUT_MINUTES)


def scrape(minute: int, t0_ms: int) -> str:
    """The scrape of minute `minute` (0 .. MINUTES), every sample stamped t0 + minute."""
    ts = t0_ms + minute * 60_000
    uptime = 86_400_00 + minute * 6000  # hundredths of a second: up a day at minute 0
    rows: list[tuple[tuple[str, str, str, str], dict[str, float]]] = []
    for port in range(PORTS):
        name = f"HundredGigE0/0/0/{port}"
        cabled, up = port not in UNCABLED, admin_up(port, minute)
        live = sum(admin_up(port, m) for m in range(minute)) if cabled else 0  # minutes it carried traffic
        oper = 1 if cabled and up else (2 if not up or port % 2 else 7)
        last = (
            max([b for _, b in SHUT_MINUTES if b <= minute] + [a for a, _ in SHUT_MINUTES if a <= minute], default=-1)
            if port == SHUT
            else -1
        )
        rows.append(
            (
                (alias(port), name, str(if_index(port)), name),
                {
                    "ifAdminStatus": 1 if up else 2,
                    "ifOperStatus": oper,
                    "ifHCInOctets": live * 60 * (port + 1) * 90_000_000,
                    "ifHCOutOctets": live * 60 * (port + 1) * 70_000_000,
                    "ifInErrors": 0,
                    "ifOutErrors": 0,
                    "ifInDiscards": 3 * live // 60,
                    "ifOutDiscards": 0,
                    "ifHighSpeed": 100_000,
                    "ifMtu": 9216,
                    "ifType": 6,
                    "ifLastChange": 3000 if last < 0 else 86_400_00 + last * 6000,
                },
            )
        )
    for name, index in OTHER.items():
        kind = {"MgmtEth0/RP0/CPU0/0": 6, "Null0": 1, "Loopback0": 24}[name]
        rows.append(
            (
                ("", name, str(index), name),
                {
                    "ifAdminStatus": 1,
                    "ifOperStatus": 1,
                    "ifHCInOctets": 0 if kind != 6 else 1200 * minute,
                    "ifHCOutOctets": 0 if kind != 6 else 900 * minute,
                    "ifInErrors": 0,
                    "ifOutErrors": 0,
                    "ifInDiscards": 0,
                    "ifOutDiscards": 0,
                    "ifHighSpeed": 1000 if kind == 6 else 0,
                    "ifMtu": 1514 if kind == 6 else 1500,
                    "ifType": kind,
                    "ifLastChange": 0,
                },
            )
        )
    rows.sort(key=lambda row: row[0])
    lines = []
    for metric, (kind, text) in HELP.items():
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}"]
        for (al, descr, index, name), values in rows:
            labels = f'ifAlias="{al}",ifDescr="{descr}",ifIndex="{index}",ifName="{name}"'
            lines.append(f"{metric}{{{labels}}} {go_float(values[metric])} {ts}")
    lines += [
        "# HELP snmp_scrape_duration_seconds Total SNMP time scrape took (walk and processing).",
        "# TYPE snmp_scrape_duration_seconds gauge",
        f"snmp_scrape_duration_seconds 0.412 {ts}",
        "# HELP sysUpTime The time (in hundredths of a second) since the network management portion of "
        "the system was last re-initialized. - 1.3.6.1.2.1.1.3",
        "# TYPE sysUpTime gauge",
        f"sysUpTime {go_float(uptime)} {ts}",
    ]
    return "\n".join(lines) + "\n"
