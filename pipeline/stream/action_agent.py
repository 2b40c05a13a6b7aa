"""The action agent: each alert state change to the actions of `pipeline.notify.actions` (Slurm drain
and resume), acknowledged once acted on; registered only when `actions` are configured."""

from __future__ import annotations

import asyncio

from faust.types import StreamT

from pipeline.notify.actions import Actions
from pipeline.stream.context import WorkerContext, alert_events
from pipeline.topology.inventory import load_inventory


def register(ctx: WorkerContext) -> None:
    settings = ctx.settings
    inventory = load_inventory(settings.inventory)
    slurm_names = {host.node: name for name, host in inventory.hosts.items()}  # the host name is the Slurm node
    actions = Actions(
        settings.actions, ctx.topology, slurm_names, settings.data_dir, ctx.worker_id, settings.actions_dry_run
    )

    @ctx.app.agent(ctx.alerts_topic, name="clusterpulse.actions")
    async def act(stream: StreamT) -> None:
        async for event, alert in alert_events(stream):
            await asyncio.to_thread(actions.take, alert)
            await stream.ack(event)
