"""Read a topology file of any supported kind, told apart by its content (or named with `kind`)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

from pipeline.topology.cabling_plan import load_cabling_plan
from pipeline.topology.fabric import Fabric, FabricError
from pipeline.topology.ibnetdiscover import load_ibnetdiscover
from pipeline.topology.lldp import load_lldp
from pipeline.topology.saved import load_saved

KINDS = ("ibnetdiscover", "lldp", "cabling", "saved")


def sniff(path: Path) -> str:
    """ibnetdiscover, lldp, cabling or saved (`topology import --out`), from the first bytes of the
    file (or a directory of LLDP dumps)."""
    if path.is_dir():
        return "lldp"
    try:
        head = path.open("rb").read(65536)
    except OSError as exc:
        raise FabricError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    if head[:2] == b"\x1f\x8b":
        head = gzip.GzipFile(fileobj=path.open("rb")).read(65536)
    text = head.decode("utf-8", "replace")
    lower = text.lower()
    if text.lstrip().startswith(("{", "[")):
        return "lldp"
    if lower.lstrip().startswith("clusterpulse_topology:"):
        return "saved"
    if "startdevice" in lower and "endport" in lower:
        return "cabling"
    if (
        "switchguid=" in lower
        or "\nswitch" in lower
        or "caguid=" in lower
        or "\nsw " in lower
        or lower.startswith("sw ")
    ):
        return "ibnetdiscover"
    raise FabricError(
        f"{path}: not a topology file this knows (ibnetdiscover output, "
        "`lldpcli -f json0 show neighbors` JSON, or a cabling CSV with StartDevice,StartPort,EndDevice,EndPort)"
    )


def load_fabric(path: str | Path, kind: str | None = None) -> Fabric:

    path = Path(path)
    if not path.exists():
        raise FabricError(f"{path}: no such file or directory")
    kind = kind or sniff(path)
    loaders: dict[str, Callable[[Path], Fabric]] = {
        "ibnetdiscover": load_ibnetdiscover,
        "lldp": load_lldp,
        "cabling": load_cabling_plan,
        "saved": load_saved,
    }
    if kind not in loaders:
        raise FabricError(f"unknown topology kind {kind!r} (known: {', '.join(KINDS)})")
    return loaders[kind](path)
