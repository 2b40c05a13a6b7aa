"""Card failure: a fatal error code, or a card that goes silent while its node still reports.

Pure logic over card batches: no Kafka, no clock but the samples' own timestamps. One instance
holds the state of the nodes it is shown (in the worker: the nodes of its partitions).
"""

from __future__ import annotations

import numpy as np

from pipeline.detect.alert_book import AlertBook
from pipeline.detect.error_codes import describe
from pipeline.detect.rows import node_rows
from pipeline.model.schemas import Alert, Batch
from pipeline.settings import CardFailureSettings
from pipeline.topology.protocol import ClusterTopology

KIND = "card_failed"


class CardFailureDetector:
    multi_source = True  # takes a collector's multi-node batch whole

    def __init__(self, topology: ClusterTopology, settings: CardFailureSettings | None = None) -> None:
        self.topo = topology
        self.settings = settings or CardFailureSettings()
        n, k = topology.nodes, topology.cards_per_node
        self.node_last_ms = np.full(n, -1, np.int64)  # last batch seen per node
        self.card_last_ms = np.full((n, k), -1, np.int64)  # last time each card reported
        self.healthy_since_ms = np.full((n, k), -1, np.int64)  # reporting without fatal errors since
        self.failed = np.zeros((n, k), bool)
        self.book = AlertBook()

    def push(self, batch: Batch, stream: int = 0) -> list[Alert]:
        """Take a node's card batch, or a collector's of many nodes; return alert state changes.

        The common case (every card reports, no error event, nothing failed) is judged for all
        nodes of the message at once; only unusual nodes are looked at one by one."""
        r = node_rows(batch, self.topo)
        ts = batch.ts_ms
        k = self.topo.cards_per_node
        err_card, err_code = batch.columns["err_card"], batch.columns["err_code"]
        event_counts = np.bincount(r.event_part, minlength=len(r.nodes))
        event_starts = np.concatenate(([0], np.cumsum(event_counts)))
        if batch.rows("rows") == 0:
            # error events without samples (e.g. from a kernel log): judge the codes, leave silence alone
            out: list[Alert] = []
            for p, node in enumerate(r.nodes.tolist()):
                events = slice(event_starts[p], event_starts[p + 1])
                out += self._fatal_codes(node, ts, err_card[events], err_code[events])[1]
            return out
        out = []
        for p in np.flatnonzero((r.row_counts == 0) & (event_counts > 0)).tolist():  # events only, as above
            events = slice(event_starts[p], event_starts[p + 1])
            out += self._fatal_codes(int(r.nodes[p]), ts, err_card[events], err_code[events])[1]
        last = self.node_last_ms[r.nodes]
        judged = (ts > last) & (r.row_counts > 0)  # older: a replayed or out-of-order batch, already judged
        if not judged.any():
            return out
        self.node_last_ms[r.nodes[judged]] = ts
        self.card_last_ms[r.nodes[judged & (last < 0)]] = ts  # a node's first report: a full grace period
        cards = batch.columns["card"].astype(np.intp)
        rows = judged[r.row_part]
        self.card_last_ms[r.nodes[r.row_part[rows]], cards[rows]] = ts
        unusual = judged & ((r.row_counts != k) | (event_counts > 0) | self.failed[r.nodes].any(axis=1))
        row_starts = np.concatenate(([0], np.cumsum(r.row_counts)))
        for p in np.flatnonzero(unusual).tolist():
            events = slice(event_starts[p], event_starts[p + 1])
            out += self._judge(
                int(r.nodes[p]), ts, cards[row_starts[p] : row_starts[p + 1]], err_card[events], err_code[events]
            )
        return out

    def _judge(
        self, node: int, ts: int, present: np.ndarray, err_card: np.ndarray, err_code: np.ndarray
    ) -> list[Alert]:
        """One node that is not in the common case: fatal codes, silent cards, recoveries."""
        fatal_cards, out = self._fatal_codes(node, ts, err_card, err_code)
        silent_ms = ts - self.card_last_ms[node]
        limit_ms = int(self.settings.silence_s * 1000)
        if len(present) == self.topo.cards_per_node and not fatal_cards and not self.failed[node].any():
            return out
        for card in np.flatnonzero((silent_ms >= limit_ms) & ~self.failed[node]).tolist():
            alert = self._fail(
                node,
                card,
                ts,
                f"card stopped reporting {silent_ms[card] / 1000:.0f} s ago "
                "while its node still reports (fell off the bus?)",
                {
                    "silent_s": float(silent_ms[card]) / 1000,
                    "silence_threshold_s": self.settings.silence_s,
                    "action": "reboot_node",
                },
            )
            if alert:
                out.append(alert)

        healthy = self.healthy_since_ms[node]
        reporting = np.zeros(self.topo.cards_per_node, bool)
        reporting[present] = True
        for card in fatal_cards:
            reporting[card] = False
        healthy[~reporting] = -1
        healthy[reporting & (healthy < 0)] = ts
        recover_ms = int(self.settings.recovery_s * 1000)
        recovered = self.failed[node] & reporting & (ts - healthy >= recover_ms)
        for card in np.flatnonzero(recovered).tolist():
            self.failed[node, card] = False
            alert = self.book.resolve(
                KIND,
                self.topo.card_name(node, card),
                ts,
                reason=f"card reported without fatal errors for {self.settings.recovery_s:g} s",
            )
            if alert:
                out.append(alert)
        return out

    def _fatal_codes(
        self, node: int, ts: int, err_card: np.ndarray, err_code: np.ndarray
    ) -> tuple[set[int], list[Alert]]:
        """Cards with a fatal error code among these events, and the alerts they fire."""
        fatal_cards: set[int] = set()
        out: list[Alert] = []
        for card, code in zip(err_card.tolist(), err_code.tolist()):
            info = describe(code)
            if info.alert != KIND:
                continue  # ECC codes are the ECC detector's; non-fatal codes are evidence only
            fatal_cards.add(card)
            alert = self._fail(
                node,
                card,
                ts,
                f"{info.label()} {info.name}: {info.action.replace('_', ' ')}",
                {"error_code": code, "error_name": info.name, "action": info.action},
            )
            if alert:
                out.append(alert)
        return fatal_cards, out

    def _fail(self, node: int, card: int, ts: int, why: str, evidence: dict) -> Alert | None:
        self.failed[node, card] = True
        self.healthy_since_ms[node, card] = -1
        name = self.topo.card_name(node, card)
        return self.book.fire(
            KIND,
            name,
            ts,
            severity="critical",
            summary=f"{name} failed: {why}",
            labels={"node": self.topo.node_name(node), "card": str(card)},
            evidence=evidence,
        )
