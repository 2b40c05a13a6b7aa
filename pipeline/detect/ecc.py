"""`card_ecc`: uncorrectable (double-bit) ECC errors, from the counter or from an error event."""

from __future__ import annotations

import numpy as np

from pipeline.detect.alert_book import AlertBook
from pipeline.detect.error_codes import describe
from pipeline.detect.rows import node_rows
from pipeline.model.schemas import Alert, Batch
from pipeline.settings import EccSettings
from pipeline.topology.protocol import ClusterTopology

KIND = "card_ecc"


class EccDetector:
    multi_source = True  # takes a collector's multi-node batch whole

    def __init__(self, topology: ClusterTopology, settings: EccSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or EccSettings()
        n, k = topology.nodes, topology.cards_per_node
        self.last_dbe = np.full((n, k), -1, np.int64)  # previous counter value (-1: none yet)
        self.last_error_ms = np.full((n, k), -1, np.int64)
        self.node_last_ms = np.full(n, -1, np.int64)
        self.book = AlertBook()

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        """Judge every node of a (collector's) card batch at once."""
        r = node_rows(batch, self.topo)
        ts = batch.ts_ms
        if batch.rows("rows") == 0:  # error events without samples (e.g. from a kernel log): any time
            judged = np.ones(len(r.nodes), bool)
        else:
            judged = ts > self.node_last_ms[r.nodes]
            if not judged.any():
                return []
            self.node_last_ms[r.nodes[judged & (r.row_counts > 0)]] = ts
        rows = judged[r.row_part]
        node = r.nodes[r.row_part[rows]]
        cards = batch.columns["card"][rows].astype(np.intp)
        dbe = batch.columns["ecc_dbe"][rows].astype(np.int64)
        prev = self.last_dbe[node, cards]
        # a counter below its last value was reset (driver reload, reboot): a new baseline, no error
        new_errors = np.where((prev >= 0) & (dbe >= prev), dbe - prev, 0)
        self.last_dbe[node, cards] = dbe
        reasons: dict[tuple[int, int], dict] = {}
        for i in np.flatnonzero(new_errors > 0).tolist():
            reasons[(int(node[i]), int(cards[i]))] = {"dbe_increase": int(new_errors[i]), "dbe_total": int(dbe[i])}
        events = judged[r.event_part]
        for part, card, code in zip(
            r.event_part[events].tolist(),
            batch.columns["err_card"][events].tolist(),
            batch.columns["err_code"][events].tolist(),
        ):
            info = describe(code)
            if info.alert == KIND:
                reasons.setdefault((int(r.nodes[part]), card), {}).update(
                    {"error_code": code, "error_name": info.name, "action": info.action}
                )
        out: list[Alert] = []
        for (n, card), evidence in reasons.items():
            self.last_error_ms[n, card] = ts
            name = self.topo.card_name(n, card)
            what = (
                f"{describe(evidence['error_code']).label()} {evidence['error_name']}"
                if "error_code" in evidence
                else f"{evidence['dbe_increase']} new double-bit ECC errors"
            )
            action = evidence.get("action", "reset_gpu").replace("_", " ")
            alert = self.book.fire(
                KIND,
                name,
                ts,
                severity="critical",
                summary=f"{name} uncorrectable ECC errors: {what}; {action}",
                labels={"node": self.topo.node_name(n), "card": str(card)},
                evidence=evidence,
            )
            if alert:
                out.append(alert)
        quiet_ms = int(self.settings.quiet_s * 1000)
        # only a card that reports can be judged quiet (a card that failed after its errors cannot)
        firing = list(self.book.firing())
        reporting = set(zip(node.tolist(), cards.tolist())) if firing else set()
        for alert in firing:
            n, c = self.topo.parse_card(alert.entity)
            if (n, c) in reporting and ts - self.last_error_ms[n, c] >= quiet_ms:
                done = self.book.resolve(
                    KIND, alert.entity, ts, reason=f"no new uncorrectable error for {self.settings.quiet_s:g} s"
                )
                if done:
                    out.append(done)
        return out
