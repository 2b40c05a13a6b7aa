"""Hosts with fewer NICs than cards (a QDR fabric with one HCA per host, or two HCAs for eight
cards): which NIC serves which card (card j on NIC j mod n, or the inventory's `nic_cards`), and the
simulator, detectors and root cause on it. Fabrics are hand-written ibnetdiscover files."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.eval.evaluate import run_offline
from pipeline.model.schemas import decode_batch
from pipeline.model.topics import PORT_TELEMETRY, STEP_TELEMETRY
from pipeline.settings import load_settings
from pipeline.topology.inventory import InventoryError, load_inventory
from pipeline.topology.synthetic import UnknownEntity
from producers.scenario import ScenarioError, load_scenario, parse_scenario
from producers.simulator import Simulator

LEAVES = (("a000000000000001", "LA"), ("a000000000000002", "LB"))
SPINE = "b000000000000001"


def qdr_fabric(hosts: int, hcas: int) -> str:
    """ibnetdiscover (default form) of two IS5030 leaves under one spine, 4xQDR. With one HCA
    (`mlx4_0`) the first half of the hosts is on LA, the rest on LB; with two, host i's HCA h is
    on leaf (i + h) mod 2."""
    ports: dict[str, list[tuple[str, str]]] = {guid: [] for guid, _ in LEAVES}
    cas = []
    for i in range(hosts):
        for h in range(hcas):
            guid = f"c0{i:07d}{h:07d}"
            leaf = LEAVES[(i + h) % 2 if hcas > 1 else i * 2 // hosts][0]
            ports[leaf].append((guid, f"host-{i + 1} mlx4_{h}"))
            cas.append((guid, f"host-{i + 1} mlx4_{h}", leaf, len(ports[leaf])))
    name = dict(LEAVES)
    lines = []
    for lid, (leaf, label) in enumerate(LEAVES, 1):
        lines.append(f'Switch\t36 "S-{leaf}"\t\t# "MF0;{label}:IS5030/U1" enhanced port 0 lid {lid} lmc 0')
        lines += [
            f'[{p}]\t"H-{guid}"[1]({guid}) \t\t# "{desc}" lid {100 + p} 4xQDR'
            for p, (guid, desc) in enumerate(ports[leaf], 1)
        ]
        lines += [f'[36]\t"S-{SPINE}"[{lid}]\t\t# "MF0;SP:IS5030/U1" lid 3 4xQDR', ""]
    lines.append(f'Switch\t36 "S-{SPINE}"\t\t# "MF0;SP:IS5030/U1" enhanced port 0 lid 3 lmc 0')
    lines += [
        f'[{lid}]\t"S-{leaf}"[36]\t\t# "MF0;{label}:IS5030/U1" lid {lid} 4xQDR'
        for lid, (leaf, label) in enumerate(LEAVES, 1)
    ]
    for guid, desc, leaf, p in cas:
        lines += [
            "",
            f'Ca\t2 "H-{guid}"\t\t# "{desc}"',
            f'[1]({guid}) \t"S-{leaf}"[{p}]\t\t# lid 1 lmc 0 "MF0;{name[leaf]}:IS5030/U1" lid 1 4xQDR',
        ]
    return "\n".join(lines) + "\n"


def scenario_file(tmp_path: Path, hcas: int, cards: int, faults: list[dict], **cluster: object) -> Path:
    (tmp_path / "fabric.txt").write_text(qdr_fabric(4, hcas))
    path = tmp_path / "scenario.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": f"qdr-{hcas}-hca-{cards}-cards",
                "seed": 3,
                "duration_s": 90,
                "noise": {"nic_reports": 1},
                "cluster": {"topology": "fabric.txt", "cards_per_node": cards, **cluster},
                "jobs": [{"name": "train", "first_node": 0, "nodes": 4, "step_s": 1.0}],
                "faults": faults,
            }
        )
    )
    return path


def test_card_j_uses_nic_j_mod_n_unless_the_inventory_says_otherwise(tmp_path: Path) -> None:
    one = load_scenario(scenario_file(tmp_path, 1, 4, [])).topology
    assert one.rails == 1 and one.card_nic.tolist() == [[0, 0, 0, 0]] * 4
    assert one.link_cards("host-2/mlx4_0~LA/2") == [f"host-2-card{c}" for c in range(4)]
    assert one.card_link("host-3-card3") == "host-3/mlx4_0~LB/1"
    assert one.switch_radius("LA")["card_names"] == [f"host-{h}-card{c}" for h in (1, 2) for c in range(4)]

    two = load_scenario(scenario_file(tmp_path, 2, 8, [])).topology
    assert two.card_nic.tolist() == [[0, 1] * 4] * 4
    assert two.link_cards("host-2/mlx4_1~LA/2") == ["host-2-card1", "host-2-card3", "host-2-card5", "host-2-card7"]

    (tmp_path / "inv.yaml").write_text(
        yaml.safe_dump(
            {
                "hosts": {
                    "host-2": {
                        "node": "host-2",
                        "nics": {"mlx4_0": 0, "mlx4_1": 1},
                        "nic_cards": {"mlx4_0": [0, 1, 2, 3], "mlx4_1": [4, 5, 6, 7]},
                    }
                }
            }
        )
    )
    served = load_scenario(scenario_file(tmp_path, 2, 8, [], inventory="inv.yaml")).topology
    assert served.card_nic.tolist()[1] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert served.card_nic.tolist()[0] == [0, 1] * 4  # hosts it does not name keep the default
    assert served.link_cards("host-2/mlx4_1~LA/2") == [f"host-2-card{c}" for c in range(4, 8)]
    assert served.card_link("host-2-card2") == "host-2/mlx4_0~LB/2"
    assert two.card_nic.tolist()[1] == [0, 1] * 4  # the cached fabric topology is left as it was
    settings = load_settings({}, environ={}).for_scenario(load_scenario(tmp_path / "scenario.yaml"))
    assert settings.build_topology().card_nic.tolist() == served.card_nic.tolist()  # the workers agree


def test_an_inventory_naming_a_nic_or_card_the_host_lacks_is_refused(tmp_path: Path) -> None:
    (tmp_path / "inv.yaml").write_text(
        yaml.safe_dump(
            {"hosts": {"host-1": {"node": "host-1", "nics": {"mlx4_0": 0}, "nic_cards": {"mlx4_0": [0, 1], 1: [2, 3]}}}}
        )
    )
    assert load_inventory(tmp_path / "inv.yaml").card_nics() == {"host-1": {0: 0, 1: 0, 2: 1, 3: 1}}
    with pytest.raises(ScenarioError, match=r"cluster.inventory.*host-1 has no NIC 1"):
        load_scenario(scenario_file(tmp_path, 1, 4, [], inventory="inv.yaml"))
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump(
            {
                "hosts": {
                    "host-1": {"node": "host-1", "nics": {"mlx4_0": 0}, "nic_cards": {"mlx4_0": [0, 1], "mlx4_9": [2]}}
                }
            }
        )
    )
    with pytest.raises(InventoryError, match="mlx4_9.*neither a device of its nics map"):
        load_inventory(tmp_path / "bad.yaml")
    topo = parse_scenario({"cluster": {"cards": 16, "cards_per_node": 8, "nodes_per_leaf": 2, "spines": 1}}).topology
    with pytest.raises(UnknownEntity, match="no card 8"):
        topo.with_card_nics({"node0000": {8: 0}})


@pytest.mark.parametrize("hcas, cards", [(1, 4), (1, 8), (2, 4), (2, 8)])
def test_the_simulator_reports_each_real_nic_and_a_shared_nic_down_stalls_its_cards(
    tmp_path: Path, hcas: int, cards: int
) -> None:
    link = "host-2/mlx4_0~LA/2" if hcas == 1 else "host-2/mlx4_1~LA/2"
    sc = load_scenario(
        scenario_file(tmp_path, hcas, cards, [{"kind": "link_down", "target": link, "start_s": 30, "duration_s": 20}])
    )
    topo = sc.topology
    nic_rows: dict[str, set[int]] = collections.defaultdict(set)
    host_says_down, steps = [], collections.Counter()
    for ts, messages in Simulator(sc).ticks():
        t = (ts - sc.start_ms) // 1000
        for m in messages:
            for b in decode_batch(m.value).split():
                if m.topic == PORT_TELEMETRY and b.source.startswith("host-"):
                    nic_rows[b.source].add(b.rows())
                    down = [
                        topo.port_link(b.source, p)
                        for p, up in zip(b.columns["port"].tolist(), b.columns["oper_up"].tolist())
                        if not up
                    ]
                    host_says_down += [(t, name) for name in down]
                elif m.topic == STEP_TELEMETRY:
                    steps[t] += 1
    assert dict(nic_rows) == {f"host-{i}": {hcas} for i in range(1, 5)}  # its real NICs, not one per card
    assert {name for _, name in host_says_down} == {link}
    assert min(t for t, _ in host_says_down) == 30 and max(t for t, _ in host_says_down) == 49
    assert not any(steps[t] for t in range(31, 50)) and any(steps[t] for t in range(55, 90))


def test_a_down_shared_nic_is_one_page_naming_its_link_and_cards_and_a_dead_leaf_groups_its_hosts(
    tmp_path: Path,
) -> None:
    sc = load_scenario(
        scenario_file(
            tmp_path,
            1,
            4,
            [
                {"kind": "link_down", "target": "host-3/mlx4_0~LB/1", "start_s": 10, "duration_s": 20},
                {"kind": "switch_failure", "target": "LA", "start_s": 50, "duration_s": 20},
            ],
        )
    )
    alerts = run_offline(sc, load_settings({}, environ={}).for_scenario(sc))
    firing = [a for a in alerts if a.status == "firing"]
    pages = [a for a in firing if a.root_cause is None]
    assert [(a.kind, a.entity) for a in pages] == [("link_down", "host-3/mlx4_0~LB/1"), ("switch_down", "LA")]
    link, leaf = pages[0].evidence["blast_radius"], pages[1].evidence["blast_radius"]
    assert link["card_names"] == [f"host-3-card{c}" for c in range(4)] and link["cards"] == 4
    assert leaf["card_names"] == [f"host-{h}-card{c}" for h in (1, 2) for c in range(4)] and leaf["nodes"] == 2
    assert {a.entity for a in firing if a.root_cause == pages[1].id} == {
        "host-1/mlx4_0~LA/1",
        "host-2/mlx4_0~LA/2",
        "LA/36~SP/1",
    }
    assert len(firing) == 5


def test_the_simulators_nic_load_is_the_mean_of_the_cards_it_serves() -> None:
    from producers.simulator import _per_nic

    per_card = np.array([[0.9, 0.9, 0.05, 0.05], [0.2, 0.4, 0.6, 0.8]])
    card_nic = np.array([[0, 0, 1, 1], [0, 1, 0, 1]])
    assert np.allclose(_per_nic(per_card, card_nic, 3), [[0.9, 0.05, 0.475], [0.4, 0.6, 0.5]])
    assert _per_nic(per_card, None, 4) is per_card
