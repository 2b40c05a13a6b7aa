"""Scenarios nobody tuned against: one fault of every kind, in random order, on random targets,
with random job layouts and severities, drawn from a seed (`clusterpulse eval --random N` prints
the seeds it drew, so a miss can be replayed with `--seed`)."""

from __future__ import annotations

import numpy as np

CLUSTER = {"cards": 512, "cards_per_node": 8, "nodes_per_leaf": 16, "spines": 4}  # 64 nodes, 32 leaves
KINDS = [
    "straggler",
    "thermal_throttle",
    "link_degradation",
    "link_flap",
    "link_down",
    "card_failure",
    "ecc_error",
    "node_failure",
    "switch_failure",
    "job_hang",
]


def random_scenario(seed: int, noise_profile: str = "clean") -> dict:
    """The scenario (as a scenario file's mapping) of this seed: one fault of every kind, 45 s apart."""
    rng = np.random.default_rng(seed)
    split = int(rng.integers(20, 44))
    step_a, step_b = (float(x) for x in rng.choice([0.8, 1.0, 1.5, 2.0], 2))
    jobs = [
        {"name": "pretrain", "first_node": 0, "nodes": split, "step_s": step_a},
        {"name": "finetune", "first_node": split, "nodes": 60 - split, "step_s": step_b},
    ]  # 4 nodes idle
    used_nodes: set[int] = set()
    used_links: set[str] = set()

    def node(busy: bool = True) -> int:
        while True:
            n = int(rng.integers(0, 60 if busy else 64))
            if n not in used_nodes:
                used_nodes.add(n)
                return n

    faults = []
    for i, kind in enumerate(rng.permutation(KINDS)):
        start = 20 + 45 * i
        fault = {"kind": str(kind), "start_s": start, "duration_s": 35}
        if kind == "job_hang":
            fault["target"] = str(jobs[int(rng.integers(len(jobs)))]["name"])
        elif kind in ("straggler", "thermal_throttle", "card_failure", "ecc_error"):
            fault["target"] = f"node{node():04d}-card{int(rng.integers(8))}"
        elif kind == "node_failure":
            fault["target"] = f"node{node():04d}"
        elif kind == "switch_failure":
            fault["target"] = (
                f"leaf{int(rng.integers(32)):03d}" if rng.random() < 0.7 else f"spine{int(rng.integers(4)):03d}"
            )
        elif rng.random() < 0.6:
            n, nic = node(), int(rng.integers(8))
            fault["target"] = f"node{n:04d}-nic{nic}~leaf{nic * 4 + n // 16:03d}"
        else:  # each fault on its own link: a link that flapped a minute ago and goes down is flapping
            link = f"leaf{int(rng.integers(32)):03d}~spine{int(rng.integers(4)):03d}"
            while link in used_links:
                link = f"leaf{int(rng.integers(32)):03d}~spine{int(rng.integers(4)):03d}"
            used_links.add(link)
            fault["target"] = link
        fault["severity"] = {
            "straggler": float(rng.uniform(0.1, 0.3)),
            "thermal_throttle": float(rng.uniform(0.3, 0.7)),
            "link_degradation": float(rng.uniform(0.2, 0.6)),
            "link_flap": float(rng.uniform(0.3, 0.6)),
        }.get(str(kind), 1.0)
        faults.append(fault)
    return {
        "name": f"random-{seed}",
        "seed": seed,
        "noise": {"profile": noise_profile},
        "duration_s": 20 + 45 * len(KINDS) + 20,
        "cluster": CLUSTER,
        "jobs": jobs,
        "faults": faults,
    }
