"""A real fabric as a graph: devices (switches, hosts), the links between their ports, and tiers.

Names are the fabric's own: a switch by the name in its node description (`MLG01-02` from
`MF0;MLG01-02:MQM8700/U1`), a host by its host name, a port by the switch's port number or the
host's interface (`mlx5_0`, `ibp11s0f0`). A director chassis is one switch; its line-card ports
are `L<blade>/U<asic>/<port>` and the links inside the chassis are not fabric links.

Tiers are inferred, not assumed two: hosts are tier 0, a switch is one more than the nearest
host (leaf 1, spine 2, core 3, ...). A switch that no host reaches is tier None.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

TIER_NAMES = {0: "host", 1: "leaf", 2: "spine", 3: "core"}


class FabricError(ValueError):
    """A topology file that cannot be read; the message names the file and the line."""


@dataclass(frozen=True, order=True)
class Endpoint:
    device: str
    port: str

    def key(self) -> tuple[str, str]:
        """Compared case-insensitively and whitespace-collapsed: plans and fabrics differ in case."""
        return self.device.lower(), " ".join(self.port.lower().split())

    def __str__(self) -> str:
        return f"{self.device}/{self.port}"


@dataclass(frozen=True)
class Link:
    a: Endpoint
    b: Endpoint
    speed: str | None = None

    def key(self) -> tuple[tuple[str, str], tuple[str, str]]:
        return tuple(sorted((self.a.key(), self.b.key())))  # type: ignore[return-value]

    def __str__(self) -> str:
        return f"{self.a} - {self.b}"


@dataclass
class Device:
    name: str
    kind: str  # "switch" or "host"
    guid: str | None = None
    description: str = ""
    model: str | None = None


@dataclass
class Fabric:
    """Devices and links, each link once (files list most links from both ends)."""

    devices: dict[str, Device] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # what was left out and why

    def add_device(self, device: Device) -> None:
        self.devices.setdefault(device.name, device)

    def add_link(self, link: Link) -> None:
        self.links.append(link)

    def drop(self, why: str, count: int = 1) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + count

    def dedup(self) -> Fabric:
        """The same fabric with every link once (first seen kept)."""
        seen: set = set()
        links = []
        for link in self.links:
            if link.key() not in seen:
                seen.add(link.key())
                links.append(link)
        self.links = links
        return self

    # ---- structure ---------------------------------------------------------------------------
    def neighbours(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {name: set() for name in self.devices}
        for link in self.links:
            out.setdefault(link.a.device, set()).add(link.b.device)
            out.setdefault(link.b.device, set()).add(link.a.device)
        return out

    def tiers(self, near: dict[str, set[str]] | None = None) -> dict[str, int | None]:
        """Hosts 0; a switch one more than its nearest host (breadth first over switches).
        `near`: `neighbours()`, when the caller has it already."""
        tier: dict[str, int | None] = {name: None for name in self.devices}
        near = near if near is not None else self.neighbours()
        queue = deque()
        for name, device in self.devices.items():
            if device.kind == "host":
                tier[name] = 0
                queue.append(name)
        while queue:
            name = queue.popleft()
            for other in near.get(name, ()):
                if tier.get(other) is None and self.devices[other].kind == "switch":
                    tier[other] = tier[name] + 1  # type: ignore[operator]
                    queue.append(other)
        return tier

    def blast_radius(self, switch: str) -> dict:
        """What a dead switch takes with it: its links; the host ports cabled to it (down); the
        switches below it whose every uplink goes to it or to others so isolated, with their
        host ports (cut off from the rest of the fabric); the switches below that only lose
        some uplinks (capacity). A host is cut off when none of its ports is left in the fabric."""
        near = self.neighbours()
        tiers = self.tiers(near)
        if switch not in self.devices or self.devices[switch].kind != "switch":
            raise KeyError(switch)
        mine = tiers.get(switch)
        links = sum(1 for link in self.links if switch in (link.a.device, link.b.device))
        gone = {switch}
        if mine is not None:
            for level in range(mine - 1, 0, -1):
                for name, t in tiers.items():
                    if t == level and name not in gone:
                        up = {n for n in near[name] if (tiers.get(n) or 0) > level}
                        if up and up <= gone:
                            gone.add(name)

        def host_ports(switches: set[str]) -> list[str]:
            return sorted(str(end) for link in self.links for end, other in ((link.a, link.b), (link.b, link.a))
                          if self.devices[end.device].kind == "host" and other.device in switches)

        down, isolated = host_ports({switch}), host_ports(gone - {switch})
        hosts = {port.split("/", 1)[0] for port in down + isolated}
        cut_off = {h for h in hosts if not any(self.devices[n].kind == "switch" and n not in gone for n in near[h])}
        degraded = {n for g in gone for n in near[g] if self.devices[n].kind == "switch" and n not in gone
                    and (tiers.get(n) or 0) < (tiers.get(g) or 0)}
        return {"switch": switch, "tier": mine, "links": links, "host_ports_down": down,
                "switches_isolated": sorted(gone - {switch}), "host_ports_isolated": isolated,
                "hosts_affected": sorted(hosts), "hosts_cut_off": sorted(cut_off),
                "switches_degraded": sorted(degraded)}

    def summary(self) -> dict:
        tiers = self.tiers()
        counts: dict[int, int] = {}
        for t in tiers.values():
            counts[-1 if t is None else t] = counts.get(-1 if t is None else t, 0) + 1
        # hosts, leaves, spines, cores, higher tiers, then switches no host reaches
        by_tier = {("unreached switch" if t < 0 else TIER_NAMES.get(t, f"tier {t}")): counts[t]
                   for t in sorted(counts, key=lambda t: (t < 0, t))}
        host_ports = sum(1 for link in self.links
                         for end in (link.a, link.b) if self.devices[end.device].kind == "host")
        return {"devices": len(self.devices), "by_tier": by_tier, "links": len(self.links),
                "host_ports": host_ports, "tiers": max((t for t in tiers.values() if t is not None), default=0),
                "dropped": dict(self.dropped)}
