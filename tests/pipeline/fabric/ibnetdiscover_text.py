"""Small ibnetdiscover dumps of our own, written in the real tool's two forms (default topology file
with `vendid`/`devid` per node, and `--ports`), each link listed from both ends as a full capture
lists it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    description: str  # "MF0;leaf-1:MQM8700/U1", "gpu-01 mlx5_0", "MT4123 ConnectX6   Mellanox Technologies"
    switch: bool
    devid: str = "0xd2f0"


@dataclass(frozen=True)
class Cable:
    a: str
    a_port: int
    b: str
    b_port: int
    rate: str = "4xHDR"  # "4xHDR"; the --ports form splits it into "4x HDR"


def guids(nodes: dict[str, Node]) -> dict[str, str]:
    """A node GUID per node id, switches `a0..`, CAs `c0..`."""
    return {key: f"{'a' if node.switch else 'c'}{i + 1:015x}" for i, (key, node) in enumerate(nodes.items())}


def default_form(nodes: dict[str, Node], cables: list[Cable]) -> str:
    guid = guids(nodes)
    lid = {key: i + 1 for i, key in enumerate(nodes)}
    out = ["#", "# Topology file: generated on Tue Feb 23 14:02:06 2021", "#"]
    for key, node in nodes.items():
        g = guid[key]
        out += ["", "vendid=0x2c9", f"devid={node.devid}", f"sysimgguid=0x{g}"]
        if node.switch:
            out += [f"switchguid=0x{g}({g})",
                    f'Switch\t41 "S-{g}"\t\t# "{node.description}" enhanced port 0 lid {lid[key]} lmc 0']
        else:
            out += [f"caguid=0x{g}", f'Ca\t2 "H-{g}"\t\t# "{node.description}"']
        ends = [(c.a_port, c.b, c.b_port, c.rate) for c in cables if c.a == key] + \
               [(c.b_port, c.a, c.a_port, c.rate) for c in cables if c.b == key]
        for port, peer, peer_port, rate in sorted(ends):
            other, pg = nodes[peer], guid[peer]
            if node.switch and other.switch:
                out.append(f'[{port}]\t"S-{pg}"[{peer_port}]\t\t# "{other.description}" lid {lid[peer]} {rate}')
            elif node.switch:
                out.append(f'[{port}]\t"H-{pg}"[{peer_port}]({pg}) \t\t# "{other.description}" lid {lid[peer]} {rate}')
            else:
                out.append(f'[{port}]({g}) \t"S-{pg}"[{peer_port}]\t\t# lid {lid[key]} lmc 0 "{other.description}" '
                           f'lid {lid[peer]} {rate}')
    return "\n".join(out) + "\n"


def ports_form(nodes: dict[str, Node], cables: list[Cable]) -> str:
    guid = guids(nodes)
    lid = {key: i + 1 for i, key in enumerate(nodes)}
    lines = []
    for c in cables:
        width, speed = c.rate.split("x", 1)
        for here, port, there, peer_port in ((c.a, c.a_port, c.b, c.b_port), (c.b, c.b_port, c.a, c.a_port)):
            mine, theirs = nodes[here], nodes[there]
            lines.append(f"{'SW' if mine.switch else 'CA'} {lid[here]:5d} {port:2d} 0x{guid[here]} {width}x {speed} - "
                         f"{'SW' if theirs.switch else 'CA'} {lid[there]:5d} {peer_port:2d} 0x{guid[there]} "
                         f"( '{mine.description}' - '{theirs.description}' )")
    return "\n".join(lines) + "\n"
