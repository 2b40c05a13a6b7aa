"""Switch tiers from a fabric's structure, not from host distance alone.

1. Leaves are the switches that carry the fabric's host ports: a switch whose share of host links
   is at least half the usual leaf's (the share at which the median host port sits), unless most
   of its switch links go to switches with at least 1.5 times its share (it sits over leaves). A
   spine with service hosts (UFM, login, provisioning) has a small share, or sits over leaves
   with a larger one, and stays a spine.
2. Levels count up from the leaves (breadth first over switch-to-switch links only).
3. A switch is part of the tree when it joins switches below it that nothing lower joins (its
   lower neighbours lie in two or more components of the levels below it): spines join leaves,
   cores join spines of different groups. The highest such level is the top tier.
4. Any other switch hangs off the tree (a leaf without hosts under its spines or a director, a
   management spine under the cores): its tier counts down from the top, one per hop. One that
   would go below the leaves that way (a spine over a lone leaf, where nothing joins) keeps its
   level.

Hosts are tier 0; a switch that no host reaches is None.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

TIER_LABELS = {0: "host", 1: "leaf", 2: "spine", 3: "core"}


def tier_label(tier: int | None) -> str:
    """leaf, spine, core, tier4, ...; unreached for None."""
    return "unreached" if tier is None else TIER_LABELS.get(tier, f"tier{tier}")


def infer_tiers(kinds: dict[str, str], links: Iterable[tuple[str, str]]) -> dict[str, int | None]:
    """Tier per device (see the module docstring). `kinds`: device -> "host" or "switch";
    `links`: the devices at either end of each link, parallel links repeated."""
    switches = [name for name, kind in kinds.items() if kind == "switch"]
    near: dict[str, set[str]] = {name: set() for name in switches}
    host_links: Counter[str] = Counter()
    switch_links: Counter[tuple[str, str]] = Counter()  # (switch, neighbour) -> links
    for a, b in links:
        if kinds[a] == "switch" and kinds[b] == "switch":
            if a != b:
                near[a].add(b)
                near[b].add(a)
                switch_links[a, b] += 1
                switch_links[b, a] += 1
        elif kinds[a] == "switch":
            host_links[a] += 1
        elif kinds[b] == "switch":
            host_links[b] += 1
    tiers: dict[str, int | None] = {name: (0 if kind == "host" else None) for name, kind in kinds.items()}
    seeds = leaf_seeds(host_links, switch_links)
    for component in _components(near):
        leaves = (component & seeds) or {s for s in component if host_links[s]}
        if leaves:
            tiers.update(_component_tiers(near, component, leaves))
    return tiers


def leaf_seeds(host_links: Counter[str], switch_links: Counter[tuple[str, str]]) -> set[str]:
    """Switches whose share of host links is at least half the share at the median host port,
    less those whose switch links mostly go to switches with 1.5 times their share."""
    to_switches: Counter[str] = Counter()
    for (s, _), n in switch_links.items():
        to_switches[s] += n
    share = {s: n / (n + to_switches[s]) for s, n in host_links.items() if n}
    half, seen, usual = sum(host_links[s] for s in share) / 2, 0, 0.0
    for s in sorted(share, key=share.__getitem__):
        seen += host_links[s]
        if seen >= half:
            usual = share[s]
            break
    above: Counter[str] = Counter()  # links to switches with a much larger share of hosts
    for (s, o), n in switch_links.items():
        if s in share and share.get(o, 0.0) >= 1.5 * share[s]:
            above[s] += n
    return {s for s, value in share.items() if value >= usual / 2 and 2 * above[s] <= to_switches[s]}


def _component_tiers(near: dict[str, set[str]], component: set[str], leaves: set[str]) -> dict[str, int]:
    level = _distances(near, leaves, start=1)
    in_tree = leaves | _joining(near, level)
    top_level = max(level[s] for s in in_tree)
    depth = _distances(near, {s for s in in_tree if level[s] == top_level}, start=0)
    return {s: level[s] if s in in_tree or top_level - depth[s] < 1 else top_level - depth[s] for s in component}


def _joining(near: dict[str, set[str]], level: dict[str, int]) -> set[str]:
    """Switches whose lower neighbours lie in two or more components of the levels below them."""
    parent = {s: s for s in level}

    def root(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    by_level: dict[int, list[str]] = {}
    for s, n in level.items():
        by_level.setdefault(n, []).append(s)
    joining = set()
    for n in sorted(by_level):
        for s in by_level[n]:
            if len({root(o) for o in near[s] if level[o] == n - 1}) >= 2:
                joining.add(s)
        for s in by_level[n]:  # now the levels up to n are one union
            for o in near[s]:
                if level[o] <= n:
                    parent[root(o)] = root(s)
    return joining


def _distances(near: dict[str, set[str]], sources: set[str], start: int) -> dict[str, int]:
    out = dict.fromkeys(sources, start)
    queue = deque(sources)
    while queue:
        s = queue.popleft()
        for o in near[s]:
            if o not in out:
                out[o] = out[s] + 1
                queue.append(o)
    return out


def _components(near: dict[str, set[str]]) -> list[set[str]]:
    seen: set[str] = set()
    out = []
    for s in near:
        if s not in seen:
            part = set(_distances(near, {s}, 0))
            seen |= part
            out.append(part)
    return out
