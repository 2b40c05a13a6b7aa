"""Links that came up slower or narrower than they should, as ibdiagnet's speed and width checks
flag them, from the rates a topology dump records (`4xHDR`).

A link is compared with the usual rate of links of its kind: the same pair of ends, an end being
its hardware (the `devid` ibnetdiscover's default form gives per node, else a switch's model) and,
for a host, its family (its name without the trailing number: `st21scr`, `luna-`). "Usual" is
a strict majority of at least two links; a kind without one falls back to the host's other ports,
then to the whole fabric. So storage hosts whose HCAs all run 4xEDR in a 4xHDR fabric are not
slow, while one of a thousand ConnectX-6 links at 4xEDR is. Whatever the kind, a link narrower
than the fabric's usual width (1x or 2x where 4x is usual) and a speed that collapsed to SDR or
DDR where the fabric runs faster are always slow.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.topology.fabric import Fabric, Link, link_name

LANE_GBPS = {
    "SDR": 2.5,
    "DDR": 5.0,
    "QDR": 10.0,
    "FDR10": 10.3125,
    "FDR": 14.0625,
    "EDR": 25.78125,
    "HDR": 53.125,
    "NDR": 106.25,
    "XDR": 212.5,
}
COLLAPSED = ("SDR", "DDR")  # where a link lands when it trains down
_RATE = re.compile(r"^(\d+)x\s*([A-Za-z0-9]+)$")
_UNNAMED_HOST = re.compile(r"^H-[0-9a-f]+$")  # an HCA that names no host: no family
_TRAILING_NUMBER = re.compile(r"\d+$")


@dataclass(frozen=True)
class Rate:
    width: int  # lanes
    speed: str  # SDR ... XDR

    def __str__(self) -> str:
        return f"{self.width}x{self.speed}"

    def below(self, usual: Rate) -> bool:
        """Narrower, or slower per lane."""
        return self.width < usual.width or LANE_GBPS[self.speed] < LANE_GBPS[usual.speed]


def parse_rate(text: str | None) -> Rate | None:
    """`4xHDR` or `4x HDR` -> Rate(4, "HDR"); None for anything else (`4x???`, no rate)."""
    match = _RATE.match((text or "").strip())
    if not match or match.group(2).upper() not in LANE_GBPS:
        return None
    return Rate(int(match.group(1)), match.group(2).upper())


@dataclass(frozen=True)
class SlowLink:
    link: Link
    rate: Rate
    usual: Rate


def usual_rate(rates: Iterable[Rate]) -> Rate | None:
    """The rate a strict majority of at least two links run at, else None."""
    counts = Counter(rates)
    if not counts:
        return None
    rate, n = counts.most_common(1)[0]
    return rate if n >= 2 and 2 * n > sum(counts.values()) else None


def slow_links(fabric: Fabric) -> list[SlowLink]:
    """Links below the usual rate of their kind (see the module docstring), in file order."""
    rated = [(link, rate) for link in fabric.links if (rate := parse_rate(link.speed))]
    if not rated:
        return []
    fabric_usual = Counter(rate for _, rate in rated).most_common(1)[0][0]
    by_kind: dict[tuple, list[Rate]] = {}
    by_host: dict[str, list[Rate]] = {}
    for link, rate in rated:
        by_kind.setdefault(_kind(fabric, link), []).append(rate)
        for end in (link.a, link.b):
            if fabric.devices[end.device].kind == "host":
                by_host.setdefault(end.device, []).append(rate)
    usual_of_kind = {kind: usual_rate(rates) for kind, rates in by_kind.items()}
    usual_of_host = {host: usual_rate(rates) for host, rates in by_host.items()}
    out = []
    for link, rate in rated:
        usual = _reference(fabric, link, usual_of_kind, usual_of_host) or fabric_usual
        if rate.below(usual):
            out.append(SlowLink(link, rate, usual))
        elif rate.width < fabric_usual.width or (rate.speed in COLLAPSED and rate.below(fabric_usual)):
            out.append(SlowLink(link, rate, fabric_usual))
    return out


def slow_link_report(fabric: Fabric) -> list[dict[str, str]]:
    """[{"link": "H-.../1~leaf-1/3", "rate": "4xSDR", "usual": "4xHDR"}], by link name."""
    tiers = fabric.tiers()
    kinds = {name: d.kind for name, d in fabric.devices.items()}
    return sorted(
        (
            {"link": link_name(s.link, kinds, tiers), "rate": str(s.rate), "usual": str(s.usual)}
            for s in slow_links(fabric)
        ),
        key=lambda row: row["link"],
    )


def _end_kind(fabric: Fabric, device: str) -> tuple[str, str]:
    """(hardware, host family): (`0x101b`, `st21scr`), (`MQM8700`, ``); `?` for unknown hardware."""
    d = fabric.devices[device]
    hardware = d.devid or (d.model if d.kind == "switch" else None) or "?"
    if d.kind != "host" or _UNNAMED_HOST.match(device):
        return hardware, ""
    return hardware, _TRAILING_NUMBER.sub("", device)


def _kind(fabric: Fabric, link: Link) -> tuple:
    return tuple(sorted((_end_kind(fabric, link.a.device), _end_kind(fabric, link.b.device))))


def _reference(fabric: Fabric, link: Link, usual_of_kind: dict, usual_of_host: dict) -> Rate | None:
    """The kind's usual rate, else the host's (its other ports), else None."""
    if usual_of_kind.get(kind := _kind(fabric, link)):
        return usual_of_kind[kind]
    hosts = [e.device for e in (link.a, link.b) if fabric.devices[e.device].kind == "host"]
    return next((usual_of_host[h] for h in hosts if usual_of_host.get(h)), None)
