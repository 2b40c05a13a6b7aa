"""Switch tiers from the fabric's structure: service hosts on spines, leaves without hosts and a
management spine hanging off the cores; then the real dumps, whose switch names say the tier."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from pipeline.topology.fabric import Device, Endpoint, Fabric, Link
from pipeline.topology.load import load_fabric
from pipeline.topology.saved import save_fabric
from pipeline.topology.tiers import tier_label
from tests.conftest import SAMPLES, run_cli


def fat_tree(service_hosts_per_spine: int = 3) -> Fabric:
    """Two pods of four leaves (eight hosts each, two links to each of the pod's two spines); spine
    i of each pod to cores i-0 and i-1 (two links each). UFM, login and provisioning hosts hang off
    both spines of pod 0, as NVIDIA's reference design cables them."""
    f = Fabric()

    def cable(a: str, pa: int | str, b: str, pb: int | str) -> None:
        for name in (a, b):
            f.add_device(Device(name, "host" if name.startswith(("gpu", "ufm", "login", "prov")) else "switch"))
        f.add_link(Link(Endpoint(a, str(pa)), Endpoint(b, str(pb))))

    for pod in range(2):
        for leaf in range(4):
            name = f"leaf-{pod}{leaf}"
            for h in range(8):
                cable(f"gpu-{pod}{leaf}{h}", "mlx5_0", name, h + 1)
            for spine in range(2):
                for k in range(2):
                    cable(name, 9 + 2 * spine + k, f"spine-{pod}{spine}", 1 + 2 * leaf + k)
        for spine in range(2):
            for core in range(2):
                for k in range(2):
                    cable(f"spine-{pod}{spine}", 9 + 2 * core + k, f"core-{spine}{core}", 1 + 2 * pod + k)
    services = ["ufm-1", "ufm-2", "login-1", "login-2", "prov-1", "prov-2", "prov-3", "prov-4"]
    for i, host in enumerate(services[:service_hosts_per_spine]):
        cable(host, "mlx5_0", "spine-00", 20 + i)
        cable(host, "mlx5_1", "spine-01", 20 + i)
    return f


def by_tier(fabric: Fabric) -> dict[str, set[str]]:
    out = collections.defaultdict(set)
    for name, tier in fabric.tiers().items():
        if fabric.devices[name].kind == "switch":
            out[tier_label(tier)].add(re.sub(r"-\d+$", "", name))
    return dict(out)


@pytest.mark.parametrize("services", [3, 8])  # 8: a spine with as large a share of hosts as half a leaf's
def test_service_hosts_on_spines_make_them_neither_leaves_nor_push_the_cores_down(services: int) -> None:
    """The old rule (a switch one more than its nearest host) made spine-00/01 leaves and every core
    a spine."""
    fabric = fat_tree(services)
    assert by_tier(fabric) == {"leaf": {"leaf"}, "spine": {"spine"}, "core": {"core"}}
    assert fabric.summary()["by_tier"] == {"host": 64 + services, "leaf": 8, "spine": 4, "core": 4}


def test_leaves_without_hosts_and_a_management_spine_under_the_cores_keep_their_tiers() -> None:
    """A leaf whose hosts are not cabled hangs under its pod's spines (not a core); a management
    spine reached only through the cores, and its hostless leaf, are a spine and a leaf."""
    fabric = fat_tree()
    for spine in range(2):
        fabric.add_link(Link(Endpoint("leaf-empty", str(spine + 1)), Endpoint(f"spine-1{spine}", "30")))
    fabric.add_device(Device("leaf-empty", "switch"))
    for core in range(2):
        fabric.add_link(Link(Endpoint("mspine", str(core + 1)), Endpoint(f"core-0{core}", "30")))
    fabric.add_link(Link(Endpoint("mleaf", "1"), Endpoint("mspine", "10")))
    fabric.add_device(Device("mspine", "switch"))
    fabric.add_device(Device("mleaf", "switch"))
    tiers = fabric.tiers()
    assert (tiers["leaf-empty"], tiers["mspine"], tiers["mleaf"]) == (1, 2, 1)
    assert {tiers[f"core-{i}{j}"] for i in range(2) for j in range(2)} == {3}


def test_a_spine_over_a_lone_leaf_is_still_above_it() -> None:
    f = Fabric()
    for name, kind in (("gpu-1", "host"), ("leaf", "switch"), ("spine", "switch")):
        f.add_device(Device(name, kind))
    f.add_link(Link(Endpoint("gpu-1", "mlx5_0"), Endpoint("leaf", "1")))
    f.add_link(Link(Endpoint("leaf", "33"), Endpoint("spine", "1")))
    assert f.tiers() == {"gpu-1": 0, "leaf": 1, "spine": 2}


def test_import_json_names_each_switchs_tier(tmp_path: Path) -> None:
    fabric = fat_tree()
    fabric.add_device(Device("lab-a", "switch"))  # cabled to nothing that reaches a host
    fabric.add_device(Device("lab-b", "switch"))
    fabric.add_link(Link(Endpoint("lab-a", "1"), Endpoint("lab-b", "1")))
    path = tmp_path / "fabric.yaml"
    save_fabric(fabric, path)
    out = run_cli("topology", "import", str(path), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["switch_tier"]["spine-00"] == "spine" and result["switch_tier"]["core-11"] == "core"
    assert result["switch_tier"]["leaf-13"] == "leaf" and result["switch_tier"]["lab-a"] == "unreached"
    assert set(result["switch_tier"]) == {n for n, d in fabric.devices.items() if d.kind == "switch"}
    assert result["tiers"] == {"leaf": 8, "spine": 4, "core": 4, "unreached switch": 2}
    assert {"source", "format", "switches", "hosts", "host_ports", "links", "dropped", "out"} <= set(result)
    assert [tier_label(t) for t in (1, 4, None)] == ["leaf", "tier4", "unreached"]


# ---- the real dumps: the switches' own names say the tier -----------------------------------------


def _named_tier(name: str, model: str | None) -> str:
    """Selene's LG/MLG/SLG leaves, CSPINE/MSPINE/SSPINE spines, CCORE/SCORE cores; a site's
    `…ib0` MQM8700 leaves under `…ib1-A` MCS8500 directors; Lassen's and the CS8500 dump's unnamed
    single-ASIC switches under CS7500/CS8500 directors."""
    if re.match(r"^(LG|MLG|SLG)\d", name) or name.lower().endswith("ib0") or name.startswith("S-"):
        return "leaf"
    if re.match(r"^(CSPINE|MSPINE|SSPINE)\d", name) or model in ("MCS8500", "CS7500"):
        return "spine"
    if re.match(r"^(CCORE|SCORE)\d", name):
        return "core"
    raise AssertionError(f"no tier in the name {name!r} ({model})")


REAL = {
    "selene_ib_topology/selene.compute.ibnetdiscover.txt.gz": {"leaf": 204, "spine": 322, "core": 140},
    "selene_ib_topology/selene.storage.ibnetdiscover.txt.gz": {"leaf": 64, "spine": 64, "core": 32},
    "ufm_ndt_cabling/ibnetdiscover_director.txt.gz": {"leaf": 160, "spine": 4},
    "fabric_dumps/llnl_lassen_cs7500_ibnetdiscover.txt.gz": {"leaf": 84, "spine": 2},
    "fabric_dumps/cs8500_hdr_ibdiagnet_lst.txt.gz": {"leaf": 72, "spine": 2},
}


@pytest.mark.parametrize("dump", sorted(REAL))
def test_tiers_of_real_dumps_agree_with_the_switches_names(dump: str) -> None:
    """Selene's hostless storage leaves (SLG03-09..12) and management switches, the site's six
    hostless leaves and the CS8500 dump's fifteen were cores (or tier 4 and 5) by host distance."""
    path = SAMPLES / dump
    if not path.exists():
        pytest.skip(f"../shared/samples/{dump} is not here")
    fabric = load_fabric(path)
    tiers = fabric.tiers()
    wrong = {
        n: tier_label(tiers[n])
        for n, d in fabric.devices.items()
        if d.kind == "switch" and tier_label(tiers[n]) != _named_tier(n, d.model)
    }
    assert wrong == {}
    assert {k: v for k, v in fabric.summary()["by_tier"].items() if k != "host"} == REAL[dump]
