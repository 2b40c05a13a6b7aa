"""Card error codes (NVIDIA XID, Ascend fault codes) and the action each needs.

The table is data: `pipeline/data/error_codes.csv`, which cites its sources.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class ErrorCode:
    vendor: str
    code: int
    name: str
    fatal: bool
    action: str  # reset_gpu | reboot_node | restart_job | ignore
    alert: str = "none"  # the alert kind the code raises by itself: card_failed | card_ecc | none

    def label(self) -> str:
        return f"XID {self.code}" if self.vendor == "nvidia" else f"0x{self.code:08X}"


ACTIONS = ("reset_gpu", "reboot_node", "restart_job", "ignore")
ALERTS = ("card_failed", "card_ecc", "none")


@lru_cache(maxsize=1)
def error_codes() -> dict[int, ErrorCode]:
    """All known codes by number. NVIDIA XIDs are small, Ascend codes are 32-bit; they do not clash."""
    text = resources.files("pipeline").joinpath("data/error_codes.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    table: dict[int, ErrorCode] = {}
    for row in rows:
        code = int(row["code"], 0)
        if row["action"] not in ACTIONS:
            raise ValueError(f"error_codes.csv: code {row['code']} has unknown action {row['action']!r}")
        if row["alert"] not in ALERTS:
            raise ValueError(f"error_codes.csv: code {row['code']} has unknown alert {row['alert']!r}")
        table[code] = ErrorCode(row["vendor"], code, row["name"], row["fatal"] == "1", row["action"], row["alert"])
    return table


def describe(code: int) -> ErrorCode:
    """The table entry, or an unknown, non-fatal entry that says so."""
    known = error_codes().get(code)
    if known:
        return known
    vendor = "nvidia" if code < 1 << 16 else "ascend"
    return ErrorCode(vendor, code, "unknown error code", False, "ignore")
