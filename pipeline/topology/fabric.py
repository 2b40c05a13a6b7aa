"""A real fabric as a graph: devices (switches, hosts), the links between their ports, and tiers.

Names are the fabric's own: a switch by the name in its node description (`MLG01-02` from
`MF0;MLG01-02:MQM8700/U1`), a host by its host name, a port by the switch's port number or the
host's interface (`mlx5_0`, `ibp11s0f0`). A director chassis is one switch; its line-card ports
are `L<blade>/U<asic>/<port>` and the links inside the chassis are not fabric links.

Tiers are inferred from the fabric's structure, not assumed two (`pipeline.topology.tiers`): hosts
are tier 0, leaves (the switches carrying the hosts' ports) 1, spines 2, cores 3, ...; a switch
that no host reaches is tier None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.topology.tiers import TIER_LABELS as TIER_NAMES
from pipeline.topology.tiers import infer_tiers


def natural_key(text: str) -> list:
    """Sorts `dgx2` before `dgx10`."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


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


def ordered_ends(link: Link, kinds: dict[str, str], tiers: dict[str, int | None]) -> tuple[Endpoint, Endpoint]:
    """A link's ends in the order the pipeline names it: the host's first, else the lower tier's
    (a switch no host reaches last), then by name and port."""
    if kinds[link.a.device] != kinds[link.b.device]:
        return (link.a, link.b) if kinds[link.a.device] == "host" else (link.b, link.a)
    lo, hi = sorted(
        (link.a, link.b), key=lambda e: (tiers.get(e.device) or 99, natural_key(e.device), natural_key(e.port))
    )
    return lo, hi


def link_name(link: Link, kinds: dict[str, str], tiers: dict[str, int | None]) -> str:
    """`luna-0001/mlx5_0~LG01-01/1`, `LG01-01/21~CSPINE1-01/1`: as alerts and the lake name links."""
    lo, hi = ordered_ends(link, kinds, tiers)
    return f"{lo}~{hi}"


@dataclass
class Device:
    name: str
    kind: str  # "switch" or "host"
    guid: str | None = None
    description: str = ""
    model: str | None = None
    devid: str | None = None  # the hardware's device id (ibnetdiscover's `devid=0x101b`), when the file has it


@dataclass
class Fabric:
    """Devices and links, each link once (files list most links from both ends)."""

    devices: dict[str, Device] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # what was left out and why
    _dropped_links: set = field(default_factory=set, repr=False, compare=False)

    def add_device(self, device: Device) -> None:
        self.devices.setdefault(device.name, device)

    def add_link(self, link: Link) -> None:
        self.links.append(link)

    def drop(self, why: str, count: int = 1) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + count

    def drop_link(self, why: str, ends: tuple[tuple[str, str], tuple[str, str]]) -> None:
        """Count a link left out once, however many times the file lists it (from each end):
        `ends` are its two (node GUID or name, port)."""
        key = (why, *sorted(ends))
        if key not in self._dropped_links:
            self._dropped_links.add(key)
            self.drop(why)

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

    def tiers(self) -> dict[str, int | None]:
        """Hosts 0, leaves 1, spines 2, cores 3, ... from the fabric's structure; None for a switch
        that no host reaches (see `pipeline.topology.tiers`)."""
        return infer_tiers(
            {name: d.kind for name, d in self.devices.items()}, ((link.a.device, link.b.device) for link in self.links)
        )

    def blast_radius(self, switch: str) -> dict:
        """What a dead switch takes with it: its links; the host ports cabled to it (down); the
        switches below it whose every uplink goes to it or to others so isolated, with their
        host ports (cut off from the rest of the fabric); the switches below that only lose
        some uplinks (capacity). A host is cut off when none of its ports is left in the fabric."""
        near = self.neighbours()
        tiers = self.tiers()
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
            return sorted(
                str(end)
                for link in self.links
                for end, other in ((link.a, link.b), (link.b, link.a))
                if self.devices[end.device].kind == "host" and other.device in switches
            )

        down, isolated = host_ports({switch}), host_ports(gone - {switch})
        hosts = {port.split("/", 1)[0] for port in down + isolated}
        cut_off = {h for h in hosts if not any(self.devices[n].kind == "switch" and n not in gone for n in near[h])}
        degraded = {
            n
            for g in gone
            for n in near[g]
            if self.devices[n].kind == "switch" and n not in gone and (tiers.get(n) or 0) < (tiers.get(g) or 0)
        }
        return {
            "switch": switch,
            "tier": mine,
            "links": links,
            "host_ports_down": down,
            "switches_isolated": sorted(gone - {switch}),
            "host_ports_isolated": isolated,
            "hosts_affected": sorted(hosts),
            "hosts_cut_off": sorted(cut_off),
            "switches_degraded": sorted(degraded),
        }

    def summary(self) -> dict:
        tiers = self.tiers()
        counts: dict[int, int] = {}
        for t in tiers.values():
            counts[-1 if t is None else t] = counts.get(-1 if t is None else t, 0) + 1
        # hosts, leaves, spines, cores, higher tiers, then switches no host reaches
        by_tier = {
            ("unreached switch" if t < 0 else TIER_NAMES.get(t, f"tier {t}")): counts[t]
            for t in sorted(counts, key=lambda t: (t < 0, t))
        }
        host_ports = sum(
            1 for link in self.links for end in (link.a, link.b) if self.devices[end.device].kind == "host"
        )
        return {
            "devices": len(self.devices),
            "by_tier": by_tier,
            "links": len(self.links),
            "host_ports": host_ports,
            "tiers": max((t for t in tiers.values() if t is not None), default=0),
            "dropped": dict(self.dropped),
        }
