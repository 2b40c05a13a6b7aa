"""`card_ecc`: uncorrectable (double-bit) ECC errors, from the counter or from an error event."""

from __future__ import annotations

import numpy as np

from pipeline.alerts import AlertBook
from pipeline.error_codes import describe
from pipeline.schemas import Alert, Batch
from pipeline.settings import EccSettings
from pipeline.topology import Topology

KIND = "card_ecc"


class EccDetector:
    def __init__(self, topology: Topology, settings: EccSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or EccSettings()
        n, k = topology.nodes, topology.cards_per_node
        self.last_dbe = np.full((n, k), -1, np.int64)  # previous counter value (-1: none yet)
        self.last_error_ms = np.full((n, k), -1, np.int64)
        self.node_last_ms = np.full(n, -1, np.int64)
        self.book = AlertBook()

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        node = self.topo.node_index(batch.source)
        ts = batch.ts_ms
        events_only = len(batch.columns["card"]) == 0  # e.g. from a kernel log: no samples, any time
        if not events_only:
            if ts <= self.node_last_ms[node]:
                return []
            self.node_last_ms[node] = ts
        cards = batch.columns["card"].astype(np.intp)
        dbe = batch.columns["ecc_dbe"].astype(np.int64)
        prev = self.last_dbe[node, cards]
        # a counter below its last value was reset (driver reload, reboot): a new baseline, no error
        new_errors = np.where((prev >= 0) & (dbe >= prev), dbe - prev, 0)
        self.last_dbe[node, cards] = dbe
        reasons: dict[int, dict] = {}
        for card in cards[new_errors > 0].tolist():
            reasons[card] = {"dbe_increase": int(new_errors[cards == card][0]),
                             "dbe_total": int(dbe[cards == card][0])}
        for card, code in zip(batch.columns["err_card"].tolist(), batch.columns["err_code"].tolist()):
            info = describe(code)
            if info.alert == KIND:
                reasons.setdefault(card, {}).update(
                    {"error_code": code, "error_name": info.name, "action": info.action})
        out: list[Alert] = []
        for card, evidence in reasons.items():
            self.last_error_ms[node, card] = ts
            name = self.topo.card_name(node, card)
            what = (f"{describe(evidence['error_code']).label()} {evidence['error_name']}" if "error_code" in evidence
                    else f"{evidence['dbe_increase']} new double-bit ECC errors")
            action = evidence.get("action", "reset_gpu").replace("_", " ")
            alert = self.book.fire(KIND, name, ts, severity="critical",
                                   summary=f"{name} uncorrectable ECC errors: {what}; {action}",
                                   labels={"node": batch.source, "card": str(card)}, evidence=evidence)
            if alert:
                out.append(alert)
        quiet_ms = int(self.settings.quiet_s * 1000)
        for alert in self.book.firing():
            n, c = self.topo.parse_card(alert.entity)
            if n == node and ts - self.last_error_ms[n, c] >= quiet_ms:
                done = self.book.resolve(KIND, alert.entity, ts,
                                         reason=f"no new uncorrectable error for {self.settings.quiet_s:g} s")
                if done:
                    out.append(done)
        return out
