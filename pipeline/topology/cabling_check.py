"""An intended cabling plan against the discovered fabric: miswired, missing and unexpected links,
as UFM's NDT plugin reports them (`miss_wired`, `missing_in_ufm`, `missing_in_ndt`).

Links are compared case-insensitively by their two ends. A planned link that was not found is
miswired when a link that was found but not planned shares one of its ends (its start end first:
the host side of a host-to-leaf row), and missing otherwise; a found link that no plan row
explains is unexpected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.topology.fabric import Fabric, Link


@dataclass
class CablingReport:
    matched: int = 0
    miswired: list[tuple[Link, Link]] = field(default_factory=list)  # (planned, found instead)
    missing: list[Link] = field(default_factory=list)  # planned, not found
    unexpected: list[Link] = field(default_factory=list)  # found, not planned

    @property
    def clean(self) -> bool:
        return not (self.miswired or self.missing or self.unexpected)

    def as_dict(self) -> dict:
        return {
            "matched": self.matched,
            "miswired": [{"planned": str(p), "found": str(f)} for p, f in self.miswired],
            "missing": [str(link) for link in self.missing],
            "unexpected": [str(link) for link in self.unexpected],
            "counts": {
                "miswired": len(self.miswired),
                "missing": len(self.missing),
                "unexpected": len(self.unexpected),
            },
        }


def check_cabling(plan: Fabric, found: Fabric) -> CablingReport:
    found_keys = {link.key(): link for link in found.links}
    plan_keys = {link.key() for link in plan.links}
    report = CablingReport()
    unplanned = [link for link in found.links if link.key() not in plan_keys]
    by_end: dict[tuple[str, str], list[Link]] = {}
    for link in unplanned:
        for end in (link.a, link.b):
            by_end.setdefault(end.key(), []).append(link)
    used: set = set()
    for link in plan.links:
        if link.key() in found_keys:
            report.matched += 1
            continue
        instead = next(
            (other for end in (link.a, link.b) for other in by_end.get(end.key(), ()) if other.key() not in used), None
        )
        if instead is None:
            report.missing.append(link)
        else:
            used.add(instead.key())
            report.miswired.append((link, instead))
    report.unexpected = [link for link in unplanned if link.key() not in used]
    return report
