"""A fabric's dimension tables in the lake: `devices` (a row per host and switch, with its tier)
and `fabric_links` (a row per link, both ends), for SQL next to the telemetry (`sql/views.sql`).

The synthetic topology gives the same tables (`fabric_of_topology`), with each link named as the
pipeline names it (`node0154-nic3~leaf124`), so `fabric_links.link` joins `port.link`. An imported
fabric's links are named by their ends (`luna-0001/mlx5_0~LG01-01/1`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.topology.fabric import Device, Endpoint, Fabric, Link
from pipeline.topology.synthetic import Topology

TABLES = ("devices", "fabric_links")
DEVICES_SCHEMA = pa.schema(
    [
        pa.field("device", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("tier", pa.int16()),
        pa.field("guid", pa.string()),
        pa.field("model", pa.string()),
        pa.field("description", pa.string()),
    ]
)
FABRIC_LINKS_SCHEMA = pa.schema(
    [
        pa.field("link", pa.string()),
        pa.field("a_device", pa.string()),
        pa.field("a_port", pa.string()),
        pa.field("b_device", pa.string()),
        pa.field("b_port", pa.string()),
        pa.field("a_tier", pa.int16()),
        pa.field("b_tier", pa.int16()),
        pa.field("speed", pa.string()),
    ]
)
SCHEMAS = {"devices": DEVICES_SCHEMA, "fabric_links": FABRIC_LINKS_SCHEMA}  # by table name


def fabric_of_topology(topo: Topology) -> tuple[Fabric, dict[tuple, str]]:
    """The synthetic rail-optimised topology as a `Fabric` (node ports are their NICs `nicJ`), and
    each link's pipeline name by its key."""
    fabric, names = Fabric(), {}
    for name in topo.node_names:
        fabric.add_device(Device(name, "host"))
    for name in topo.switch_names:
        fabric.add_device(Device(name, "switch"))
    for switch in topo.switch_names:
        for port in range(topo.switch_ports(switch)):
            link_name = topo.port_link(switch, port)
            if link_name is None:
                continue
            left, right = link_name.split("~")
            if "-nic" in left:  # a host link: the node's NIC and this leaf port
                node, nic = left.rsplit("-", 1)
                link = Link(Endpoint(node, nic), Endpoint(switch, str(port)))
            elif switch == left:  # a fabric link, from its leaf end
                spine_port = topo.switch_index(left)  # spine port L is the downlink to leaf L
                link = Link(Endpoint(left, str(port)), Endpoint(right, str(spine_port)))
            else:
                continue  # the spine end of a fabric link: added from its leaf
            fabric.add_link(link)
            names[link.key()] = link_name
    return fabric, names


def write_dimensions(fabric: Fabric, lake: str | Path, names: dict[tuple, str] | None = None) -> list[Path]:
    """Write (replace) the two tables under `lake`; returns their paths."""
    names = names or {}
    tiers = fabric.tiers()
    devices = sorted(
        fabric.devices.values(), key=lambda d: ((tiers.get(d.name) is None), tiers.get(d.name) or 0, d.name)
    )
    device_table = pa.table(
        {
            "device": [d.name for d in devices],
            "kind": [d.kind for d in devices],
            "tier": [tiers.get(d.name) for d in devices],
            "guid": [d.guid for d in devices],
            "model": [d.model for d in devices],
            "description": [d.description or None for d in devices],
        },
        schema=DEVICES_SCHEMA,
    )
    links = fabric.links

    def end_tier(end: Endpoint) -> int | None:
        return tiers.get(end.device)

    link_table = pa.table(
        {
            "link": [names.get(link.key(), f"{link.a}~{link.b}") for link in links],
            "a_device": [link.a.device for link in links],
            "a_port": [link.a.port for link in links],
            "b_device": [link.b.device for link in links],
            "b_port": [link.b.port for link in links],
            "a_tier": [end_tier(link.a) for link in links],
            "b_tier": [end_tier(link.b) for link in links],
            "speed": [link.speed for link in links],
        },
        schema=FABRIC_LINKS_SCHEMA,
    )
    written = []
    for table_name, table in zip(TABLES, (device_table, link_table)):
        folder = Path(lake) / table_name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{table_name}.parquet"
        tmp = folder / f".{table_name}.parquet.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)  # readers see the old table or the new one, never half of one
        written.append(path)
    return written
