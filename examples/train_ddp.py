"""A small data-parallel PyTorch job that reports its steps to ClusterPulse (CPU, gloo backend).

    torchrun --standalone --nproc-per-node 8 examples/train_ddp.py --steps 200

The three lines that make a training script report are marked below. Each step runs a small
MLP forward and backward for real and stands for the accelerator's share of a step by waiting
until `--step-ms` after the step began, as a GPU's kernels take their time whatever the host does
(8 ranks on a 2-core machine would otherwise time the scheduler, not the job).
`--slow-rank R --slow-from S --slowdown 0.2` makes rank R's steps 20 % longer from step S on: a
straggler.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from producers.training import StepReporter  # 1. import
from producers.training.torch_ddp import watch_ddp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--step-ms", type=float, default=50.0, help="the accelerator's share of a step, ms")
    parser.add_argument("--slow-rank", type=int, default=-1)
    parser.add_argument("--slow-from", type=int, default=50)
    parser.add_argument("--slowdown", type=float, default=0.2)
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(rank)
    model = DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    reporter = StepReporter.from_env()  # 2. job, rank, node and broker from the environment
    watch_ddp(model, reporter)  # (DDP only: counts the all-reduce wait apart from compute)
    for step in range(args.steps):
        with reporter.step():  # 3. around each step
            began = time.monotonic()
            x = torch.randn(32, 64)
            loss = model(x).pow(2).mean()
            slow = rank == args.slow_rank and step >= args.slow_from
            share = args.step_ms / 1000 * (1 + args.slowdown if slow else 1)
            time.sleep(max(0.0, began + share - time.monotonic()))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    reporter.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
