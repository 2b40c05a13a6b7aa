"""One typed, frozen settings object per process.

Sources, highest priority first: command-line flags (passed in as keyword arguments), environment
variables `CLUSTERPULSE_*` (nested with `__`, e.g. `CLUSTERPULSE_CLUSTER__CARDS`), a YAML config
file (`--config FILE` or `CLUSTERPULSE_CONFIG`), then the defaults below. The environment is read
here and nowhere else.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.model.matchers import Matcher
from pipeline.model.yaml_errors import yaml_problem
from pipeline.topology.fabric import FabricError
from pipeline.topology.imported import load_topology
from pipeline.topology.inventory import InventoryError, with_inventory
from pipeline.topology.protocol import ClusterTopology
from pipeline.topology.synthetic import ClusterShape, Topology, Wiring

ENV_PREFIX = "CLUSTERPULSE_"


class SettingsError(ValueError):
    """Invalid settings; the message names each bad setting and its value."""


class ClusterSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    cards: int = Field(10240, ge=1)
    cards_per_node: int = Field(8, ge=1, le=255)
    nodes_per_leaf: int = Field(32, ge=1)
    spines: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _whole_nodes(self) -> ClusterSettings:
        if self.cards % self.cards_per_node:
            raise ValueError(f"cards ({self.cards}) must be a multiple of cards_per_node ({self.cards_per_node})")
        return self

    def shape(self) -> ClusterShape:
        return ClusterShape(self.cards, self.cards_per_node, self.nodes_per_leaf, self.spines)


class SinkSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    flush_rows: int = Field(500_000, ge=1, description="flush a dataset's buffer at this many rows")
    flush_seconds: float = Field(10.0, gt=0, description="or when its oldest row is this old (wall clock)")
    append: bool = Field(False, description="write into a data directory that holds another cluster's lake")


class IntakeSettings(BaseModel):
    """What a worker takes of a well-formed message (pipeline.stream.intake); the rest is dead-lettered."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    future_grace_s: float = Field(
        600.0,
        gt=0,
        description="a message stamped further ahead of the worker's clock "
        "is dead-lettered (10 min, Mimir's and Loki's creation grace period)",
    )
    allowed_lateness_s: float = Field(
        3600.0,
        ge=0,
        description="a message older than its partition's newest by more "
        "is dead-lettered (a lake file per hour: at most the previous hour's gets late rows)",
    )


class CardFailureSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    silence_s: float = Field(3.0, gt=0, description="card missing from its node's reports this long → failed")
    recovery_s: float = Field(30.0, gt=0, description="card healthy this long after a failure → resolved")


class SilenceSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    silence_s: float = Field(3.0, gt=0, description="no report this long while its peers report → down")
    recovery_s: float = Field(10.0, ge=0, description="reporting again this long → resolved")
    # 3: at the simulator's and a collector's 1 Hz the 3 s of silence_s; a source reporting every
    # 10 s (a switch target) is down after 30 s of silence, not 3
    missed_reports: int = Field(3, ge=1, description="or this many of its own reports missed in a row, if longer")


class EccSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    quiet_s: float = Field(120.0, gt=0, description="no new uncorrectable error this long → resolved")


class ThermalSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # 1.5 °C: three times the 0.5 °C sample noise left once a card's own offset is taken out (DCGM
    # reports whole degrees, so +-0.5 °C of rounding alone)
    temp_over_peers_c: float = Field(1.5, gt=0, description="hotter than usual against the node's other cards by this")
    # 3 %: twice the clock spread the realistic profile assumes (no clock capture in the samples)
    clock_drop: float = Field(0.03, gt=0, lt=1, description="and clocked this fraction below its usual against them")
    # 60 samples: a minute at 1 Hz to learn where a card usually sits among its peers, then an
    # exponential average over as many: slow against a throttle that develops over ~30 s
    baseline_samples: int = Field(60, ge=1, description="samples a card's usual offset from its peers is averaged over")
    temp_limit_c: float = Field(88.0, gt=0, description="or at least this hot, whatever the peers")
    samples: int = Field(3, ge=1, description="consecutive samples to fire")
    recovery_samples: int = Field(10, ge=1, description="consecutive normal samples to resolve")


class LinkSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    down_resolve_s: float = Field(30.0, ge=0, description="a down link must stay up this long to resolve")
    flap_transitions: int = Field(3, ge=2, description="down transitions within flap_window_s → flapping")
    flap_window_s: float = Field(120.0, gt=0)
    # 10 samples at 1 Hz: a degrading link (100 CRC/s at severity 1, `docs/scenarios.md`) fills it at once
    error_window_samples: int = Field(10, ge=2, description="samples in the CRC + symbol error window")
    # 10 errors: a healthy link end's baseline (about one an hour, see the realistic profile) never
    # comes near it in 10 samples
    error_min_count: int = Field(10, ge=1, description="errors in the window to fire")
    # 7 of 10 samples: a sustained rate, not bursts; healthy links burst for 1-3 samples (the
    # realistic profile's assumption), so even two bursts on one end within 10 s (6 samples, seen
    # twice in an hour of 10,240 cards with 5 of 10) cannot reach it
    error_min_samples: int = Field(7, ge=1, description="samples with errors in the window to fire")
    error_clear_samples: int = Field(30, ge=1, description="consecutive error-free samples to resolve")


class StragglerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    window_steps: int = Field(9, ge=3, description="rolling median of a rank's relative compute time")
    # 6.5: the peer rule's margin in standard errors of that median (raised from 5.5 when a 30 %
    # straggler's peers, waiting on it, were flagged too on the shipped scenarios)
    k_sigma: float = Field(6.5, gt=0, description="threshold in standard errors of that median")
    # 5 %: ranks differ by 1-3 % for good (PAI job 1/3 per-worker offsets, the realistic profile); what
    # is slower than its own usual by more than this accumulates evidence
    min_slowdown: float = Field(0.05, gt=0, description="never flag less than this relative slowdown")
    # 1e9 rank-steps: an 8,192-rank job at 1 step/s makes 7e8 a day, so under one false alarm a day
    # per such job if the noise were Gaussian (it is heavier-tailed: h/3 caps one step's weight)
    false_alarm_steps: float = Field(1e9, gt=1, description="rank-steps per false alarm the change rule aims at")
    # 100 steps: long enough that a slow onset cannot teach a rank its own slowdown
    usual_steps: int = Field(100, ge=1, description="steps a rank's usual relative compute time is averaged over")
    min_ranks: int = Field(4, ge=2, description="jobs with fewer ranks are not compared")
    # 30 s: longer than a rank's gap between reports in any shipped job (a step of up to 4 s, a
    # reporter's 1 s batches), shorter than a checkpoint pause matters (every rank pauses then)
    rank_silence_s: float = Field(
        30.0, gt=0, description="a rank silent this long (event time) no longer holds its job's steps back"
    )
    # 90 s: a job paused longer than any checkpoint of the realistic profile (20 s) has stalled or
    # ended; its straggler alerts resolve well inside the scorer's 120 s after the fault (a firing
    # alert of a stalled job was left firing to the end of held-out runs)
    stale_s: float = Field(
        90.0, gt=0, description="event time without a step of its job after which a straggler alert resolves"
    )


class CorrelateSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    group_wait_s: float = Field(5.0, ge=0, description="event time a symptom waits for its root cause")
    # 2 s: the far ends of a dead switch's (node's) links are sampled by several switches, each once
    # a second at its own phase, so they all see it within two ticks; links lost one by one over
    # longer (cables pulled, a rolling maintenance) are not one device dying
    fabric_window_s: float | None = Field(
        2.0,
        ge=0,
        description="a switch or node whose links all go down (seen from their far ends) within this "
        "much event time is declared down then, before its own silence rule would (null: off)",
    )
    idle_s: float = Field(
        30.0,
        gt=0,
        description="wall time a lagging source may stay silent before it no "
        "longer holds the correlator's clock (a dead worker)",
    )
    # 10: of 9,529 iterations of a real Megatron-LM run (training_logs/megatron_deepseekv3_proxy golden
    # values, DGX H100) the longest took 8.3x the median and six took over 7.9x (evaluation and
    # checkpoint iterations); 10x leaves them a fifth to spare (the 5 would page every one)
    job_hang_steps: float = Field(
        10.0, gt=1, description="a job with busy cards and no step for this many usual step times hangs"
    )
    # 30 s: the floor; longer than the realistic profile's checkpoint pause (20 s) plus a step
    job_hang_min_s: float = Field(30.0, gt=0, description="... and for at least this long (event time)")


class KafkaSecuritySettings(BaseModel):
    """How every ClusterPulse client talks to Kafka: TLS and SASL, passed to kafka-python and to the
    worker's aiokafka (Faust). The SASL password comes from an environment variable, read when a
    client connects, never stored in the settings or logged."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    security_protocol: str = Field("PLAINTEXT", pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    sasl_mechanism: str | None = Field(None, pattern=r"^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$")
    sasl_username: str | None = None
    sasl_password_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="the environment variable holding the SASL password"
    )
    ssl_cafile: str | None = Field(None, description="CA bundle that signed the brokers' certificates")
    ssl_certfile: str | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: str | None = Field(None, description="its private key")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecuritySettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password_env):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password_env"
            )
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password_env):
            raise ValueError(
                f"sasl_* settings need security_protocol SASL_PLAINTEXT or SASL_SSL, not {self.security_protocol}"
            )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        if (self.ssl_cafile or self.ssl_certfile) and not self.security_protocol.endswith("SSL"):
            raise ValueError(f"ssl_* settings need security_protocol SSL or SASL_SSL, not {self.security_protocol}")
        return self

    def _password(self, environ: Mapping[str, str] | None) -> str:
        environ = os.environ if environ is None else environ
        value = environ.get(self.sasl_password_env or "")
        if not value:
            raise SettingsError(f"kafka.sasl_password_env: environment variable {self.sasl_password_env} is not set")
        return value

    def client_options(self, environ: dict[str, str] | None = None) -> dict[str, Any]:
        """kafka-python options (KafkaProducer, KafkaConsumer, KafkaAdminClient)."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self._password(environ),
            )
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, key):
                options[key] = getattr(self, key)
        return options

    def faust_credentials(self, environ: dict[str, str] | None = None) -> Any:
        """faust.App(broker_credentials=...) for aiokafka; None for PLAINTEXT."""
        if self.security_protocol == "PLAINTEXT":
            return None
        import ssl

        import faust

        context = None
        if self.security_protocol.endswith("SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if self.security_protocol.startswith("SASL_"):
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self._password(environ),
                mechanism=self.sasl_mechanism,
                ssl_context=context,
            )
        return faust.SSLCredentials(context)


class ReceiverSettings(BaseModel):
    """One place alerts are delivered to. Secrets come from an environment variable or a file
    and are read when needed, never stored in the settings or logged."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    url: str = Field(pattern=r"^https?://", description="webhook URL, or the Alertmanager base URL")
    type: str = Field(
        "webhook",
        pattern=r"^(webhook|alertmanager|dingtalk|feishu|wecom)$",
        description="webhook: one POST per state change; alertmanager: push to its API v2; dingtalk, feishu, "
        "wecom: a group robot's webhook URL (pipeline.notify.robots)",
    )
    format: str = Field(
        "clusterpulse",
        pattern=r"^(clusterpulse|alertmanager)$",
        description="webhook body: ClusterPulse JSON, or Alertmanager's webhook payload shape",
    )
    secret_env: str | None = Field(
        None, description="environment variable holding the HMAC secret (dingtalk, feishu: the robot's signing secret)"
    )
    secret_file: str | None = Field(None, description="file holding the HMAC secret")
    kinds: tuple[str, ...] = Field((), description="only these alert kinds (empty: all)")
    severities: tuple[str, ...] = Field((), description="only these severities (empty: all)")
    labels: dict[str, str] = Field(default_factory=dict, description="only alerts with these label values")
    timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(6, ge=1)
    backoff_s: float = Field(0.5, gt=0, description="first retry delay; doubles each time, with jitter")
    max_backoff_s: float = Field(30.0, gt=0)
    deadline_s: float = Field(120.0, gt=0, description="give up (dead-letter) after this long")
    resend_s: float = Field(60.0, gt=0, description="alertmanager: re-send firing alerts this often")
    notify_grouped: bool = Field(
        False,
        description="also notify grouped consequences (alerts with a root_cause); "
        "by default they ride along inside their root alert's notification",
    )
    page_url: str | None = Field(None, description="robots: the live page their messages link to")
    group_wait_s: float = Field(
        5.0,
        ge=0,
        description="a root-cause alert waits this long (wall clock) for its "
        "grouped consequences before it is sent, like Alertmanager's group_wait",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:

        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{value!r} has a bad port") from None
        if not parts.hostname or (port is not None and not 0 < port < 65536) or " " in value:
            raise ValueError(f"{value!r} is not a well-formed http(s) URL (http://host[:port]/path)")
        return value

    def check(self) -> None:
        """At start-up: raise SettingsError if the secret cannot be read now (it is read again per delivery)."""
        self.secret()

    def secret(self) -> bytes | None:
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value is None:
                raise SettingsError(f"receiver {self.name!r}: environment variable {self.secret_env} is not set")
            return value.encode()
        if self.secret_file:
            try:
                return Path(self.secret_file).read_bytes().strip()
            except OSError as exc:
                raise SettingsError(f"receiver {self.name!r}: cannot read secret_file: {exc.strerror}") from None
        return None


# Alertmanager route keys ClusterPulse does not take yet: time intervals need the top-level
# `time_intervals` definitions (a maintenance window is a silence here: docs/operations.md)
UNSUPPORTED_ROUTE_KEYS = ("mute_time_intervals", "active_time_intervals")
EVERY_LABEL = "..."  # group_by: ['...'], each alert its own group (Alertmanager's spelling)


class RouteSettings(BaseModel):
    """A node of the routing tree, shaped like Alertmanager's `route:`: an alert goes down the first
    child whose matchers all match (and on to the next sibling too when that child has `continue`);
    where no child matches, the node's receiver takes it. Unset receiver, group_by, group_wait,
    group_interval and repeat_interval are inherited from the parent."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    receiver: str | None = None
    matchers: tuple[str, ...] = Field((), description="Alertmanager matchers: name=value, name!=value, =~, !~")
    continue_: bool = Field(False, alias="continue", description="also try the next sibling routes")
    group_by: tuple[str, ...] | None = Field(
        None,
        description="labels whose values put alerts into one notification (e.g. [switch]); unset or ['...']: "
        "one notification per root cause",
    )
    group_wait: str | None = Field(
        None, description="a new group (or a root, without group_by) waits this long before it is sent (e.g. 30s)"
    )
    group_interval: str | None = Field(
        None, description="with group_by: how long a group waits before it sends what changed in it (default 5m)"
    )
    repeat_interval: str | None = Field(
        None, description="re-send a notification still firing and unchanged after this long (default: never)"
    )
    routes: tuple[RouteSettings, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in UNSUPPORTED_ROUTE_KEYS:
                if key in data:
                    raise ValueError(
                        f"{key} is not supported by clusterpulse yet (a maintenance window is a silence: "
                        "clusterpulse silence add --until); remove it"
                    )
        return data

    @field_validator("matchers")
    @classmethod
    def _check_matchers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            Matcher.parse(text)  # MatcherError is a ValueError: one line naming the matcher
        return value

    @field_validator("group_by")
    @classmethod
    def _check_group_by(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        if EVERY_LABEL in value and len(value) > 1:
            raise ValueError(f"{EVERY_LABEL!r} groups by every label: it stands alone, got {list(value)}")
        for name in value:
            if name != EVERY_LABEL and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a label name (letters, digits and _)")
        if len(set(value)) != len(value):
            raise ValueError(f"a label is named twice in {list(value)}")
        return value

    @field_validator("group_wait")
    @classmethod
    def _check_wait(cls, value: str | None) -> str | None:
        if value is not None:
            duration_s(value)
        return value

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _check_interval(cls, value: str | None) -> str | None:
        if value is not None and duration_s(value) <= 0:
            raise ValueError(f"{value!r}: an interval must be longer than 0")
        return value

    def receivers(self, path: str = "notify.route") -> list[tuple[str, str]]:
        """(path of the key, receiver) of every receiver this tree names."""
        own = [(f"{path}.receiver", self.receiver)] if self.receiver else []
        return own + [n for i, child in enumerate(self.routes) for n in child.receivers(f"{path}.routes.{i}")]


def duration_s(text: str) -> float:
    """Seconds of an Alertmanager duration: `30s`, `5m`, `1h30m`, `1d`, `500ms`."""
    found = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?", text.strip())
    if not text.strip() or not found or not any(found.groups()):
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h30m)")
    d, h, m, s, ms = (int(g or 0) for g in found.groups())
    return d * 86400 + h * 3600 + m * 60 + s + ms / 1000


class NotifySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    receivers: tuple[ReceiverSettings, ...] = ()
    route: RouteSettings | None = Field(
        None, description="the routing tree; without it every receiver whose filters match gets the alert"
    )

    @model_validator(mode="after")
    def _check_route(self) -> NotifySettings:
        if self.route is None:
            return self
        if not self.route.receiver:
            raise ValueError("notify.route.receiver: the top route needs one (the default receiver)")
        if self.route.matchers:
            raise ValueError("notify.route.matchers: the top route takes every alert; put matchers on its child routes")
        for i, receiver in enumerate(self.receivers):
            for key in ("kinds", "severities", "labels"):
                if getattr(receiver, key):
                    raise ValueError(
                        f"notify.receivers.{i}.{key}: with a route, the routes choose the alerts (put it in "
                        "a route's matchers)"
                    )
        known = {r.name for r in self.receivers}
        for path, name in self.route.receivers():
            if name not in known:
                names = ", ".join(sorted(known)) or "none"
                raise ValueError(f"{path}: no receiver named {name!r} (receivers: {names})")
        return self

    @field_validator("receivers")
    @classmethod
    def _unique(cls, value: tuple[ReceiverSettings, ...]) -> tuple[ReceiverSettings, ...]:
        names = [r.name for r in value]
        if len(names) != len(set(names)):
            raise ValueError(f"receiver names must be unique, got {names}")
        return value


# kinds whose entity names a node (the node itself, or one of its cards): what an action can drain.
# A switch's or a link's alert names no node: a dead leaf must not drain a rack of healthy nodes.
NODE_KINDS = ("card_failed", "card_ecc", "thermal_throttle", "straggler", "node_down")


class SlurmActionSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    drain: bool = Field(True, description="scontrol update NodeName=<host> State=DRAIN Reason=...")
    resume_when_resolved: bool = Field(False, description="State=RESUME when the alert resolves (only what it drained)")
    scontrol: str = Field(
        "scontrol", min_length=1, description="the scontrol command (SLURM_CONF from the environment)"
    )


class ActionSettings(BaseModel):
    """What to do about a root cause beyond paging: for now, drain its node in Slurm."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    on: tuple[str, ...] = Field(min_length=1, description=f"root-cause kinds that act (of {', '.join(NODE_KINDS)})")
    slurm: SlurmActionSettings = SlurmActionSettings()
    max_per_hour: int = Field(
        4, ge=1, description="never drain more nodes than this in any hour (what is over is recorded, not done)"
    )

    @field_validator("on")
    @classmethod
    def _node_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for kind in value:
            if kind not in NODE_KINDS:
                raise ValueError(
                    f"{kind!r} names no node to act on (acting kinds: {', '.join(NODE_KINDS)}); a switch's or "
                    "link's alert must not drain the nodes behind it"
                )
        return value


class DetectSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    card_failure: CardFailureSettings = CardFailureSettings()
    node_down: SilenceSettings = SilenceSettings()
    switch_down: SilenceSettings = SilenceSettings()
    ecc: EccSettings = EccSettings()
    thermal: ThermalSettings = ThermalSettings()
    link: LinkSettings = LinkSettings()
    straggler: StragglerSettings = StragglerSettings()
    correlate: CorrelateSettings = CorrelateSettings()


class LakeSettings(BaseModel):
    """What `clusterpulse compact` does besides compacting (pipeline.lake.compact)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    rollups: bool = Field(True, description="write per-minute rollups (card_1m, port_1m, step_1m) of compacted hours")
    retention: dict[str, str] = Field(
        default_factory=dict,
        description="dataset -> how long its hours are kept (e.g. {card: 7d, card_1m: 90d}); unnamed: kept forever",
    )

    @field_validator("retention")
    @classmethod
    def _check_retention(cls, value: dict[str, str]) -> dict[str, str]:
        for dataset, keep in value.items():  # the names are checked by `compact` against the lake's datasets
            if duration_s(keep) <= 0:
                raise ValueError(f"{dataset}: {keep!r}: keep it longer than 0")
        return value

    def retention_s(self) -> dict[str, float]:
        return {dataset: duration_s(keep) for dataset, keep in self.retention.items()}


class Settings(BaseModel):
    """Everything a ClusterPulse process can be told. Build it with `load_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    bootstrap: str | None = Field(
        None, description="Kafka bootstrap HOST:PORT[,HOST:PORT]; unset = start the embedded broker"
    )
    topic_prefix: str = Field("clusterpulse", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(12, ge=1, le=1024, description="partitions per telemetry topic (≥ workers)")
    group_id: str = Field("clusterpulse-worker", min_length=1)
    data_dir: str = Field(
        "data",
        min_length=1,
        description="where Parquet goes: a directory, or a URI pyarrow "
        "understands (s3://bucket/prefix?endpoint_override=...)",
    )
    log_level: str = Field("warning", pattern=r"^(debug|info|warning|error)$")
    cluster: ClusterSettings = ClusterSettings()
    kafka: KafkaSecuritySettings = KafkaSecuritySettings()
    broker_storage: str = Field(
        "memory://tansu/",
        pattern=r"^(memory|s3)://.+",
        description=(
            "the embedded broker's storage: memory:// (lost when it stops) or s3://BUCKET/ (any "
            "S3-compatible store; AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, "
            "AWS_ALLOW_HTTP from the environment): kept across broker restarts"
        ),
    )
    topology: str | None = Field(
        None,
        description="an imported fabric (ibnetdiscover, LLDP json0, cabling CSV or "
        "`topology import --out` YAML) instead of the synthetic cluster shape; "
        "cluster.cards_per_node still applies",
    )
    inventory: str | None = Field(
        None,
        description="an inventory file whose hosts' `nic_cards` say which NIC "
        "serves which card (default: card j on NIC j mod the host's NIC count)",
    )
    sink: SinkSettings = SinkSettings()
    lake: LakeSettings = LakeSettings()
    intake: IntakeSettings = IntakeSettings()
    detect: DetectSettings = DetectSettings()
    notify: NotifySettings = NotifySettings()
    shutdown_timeout_s: float = Field(10.0, gt=0, description="bound on a worker's graceful stop")
    health_port: int = Field(0, ge=0, lt=65536, description="the worker serves GET /healthz on this port (0 = off)")
    actions: tuple[ActionSettings, ...] = Field((), description="what the worker does about root causes (Slurm drain)")
    actions_dry_run: bool = Field(False, description="actions are logged and recorded as they would run, not run")
    api_token_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="the environment variable holding the bearer token that writes to the worker's /api/silences "
        "need (unset: writes are refused)",
    )

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected HOST:PORT[,HOST:PORT...], got {value!r}")
        return value

    def for_scenario(self, scenario: Any) -> Settings:
        """These settings with the cluster (shape or imported fabric) of a simulated scenario."""
        shape = scenario.shape
        cluster = self.cluster.model_copy(
            update={
                "cards": shape.cards,
                "cards_per_node": shape.cards_per_node,
                "nodes_per_leaf": shape.nodes_per_leaf,
                "spines": shape.spines,
            }
        )
        return self.model_copy(
            update={"cluster": cluster, "topology": scenario.topology_file, "inventory": scenario.inventory_file}
        )

    def require_bootstrap(self) -> str:
        """`bootstrap`, for a part that talks to Kafka: set by then (--bootstrap, CLUSTERPULSE_BOOTSTRAP,
        or the embedded broker's address). Raises SettingsError when it is not."""
        if self.bootstrap is None:
            raise SettingsError("no Kafka bootstrap: give --bootstrap HOST:PORT or CLUSTERPULSE_BOOTSTRAP")
        return self.bootstrap

    def build_topology(self) -> ClusterTopology:
        """The cluster's topology: the imported fabric of `topology`, or the synthetic `cluster` shape,
        with the `inventory`'s card-to-NIC map. Raises SettingsError for a file that cannot be read."""

        topology: Wiring  # a Topology or a FabricTopology
        if not self.topology:
            topology = Topology(self.cluster.shape())
        else:
            try:
                topology = load_topology(self.topology, self.cluster.cards_per_node)
            except FabricError as exc:
                raise SettingsError(f"topology: {exc}") from None
        try:
            return with_inventory(topology, self.inventory)
        except InventoryError as exc:
            raise SettingsError(f"inventory: {exc}") from None

    def topic(self, spec: Any) -> str:
        """Full topic name for a pipeline.model.topics.TopicSpec."""
        return spec.name(self.topic_prefix)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise SettingsError(f"config file {str(path)!r} is a directory") from None
    except OSError as exc:
        raise SettingsError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"config file {str(path)!r} is not text (expected YAML)") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {str(path)!r} is not valid YAML: {yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """CLUSTERPULSE_* variables as a nested mapping (strings; pydantic converts). A value that
    starts with [ or { is JSON (e.g. CLUSTERPULSE_NOTIFY__RECEIVERS='[{"name": "ops", ...}]')."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            if value.lstrip()[:1] in ("[", "{"):
                try:
                    node[path[-1]] = json.loads(value)
                    continue
                except ValueError:
                    pass  # pydantic reports it with the setting's name
            node[path[-1]] = value
    return out


def load_settings(
    flags: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings from flags > environment > config file > defaults.

    `flags` may use dotted keys for nested settings (``{"cluster.cards": 64}``); None values are
    ignored so that an unset flag does not hide the environment.
    """
    environ = dict(os.environ if environ is None else environ)
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    merged: dict[str, Any] = _read_config_file(Path(config_file)) if config_file else {}
    merged = _merge(merged, _env_overrides(environ))
    nested_flags: dict[str, Any] = {}
    for key, value in (flags or {}).items():
        if value is None:
            continue
        parts = key.split(".")
        node = nested_flags
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    merged = _merge(merged, nested_flags)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        env = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown setting {name!r} (env {env})")
        elif isinstance(err.get("input"), dict | list):  # a whole section: its message names the key
            problems.append(f"setting {name!r}: {err['msg'].removeprefix('Value error, ')}")
        else:
            problems.append(f"setting {name!r} (env {env}) = {err.get('input')!r}: {err['msg']}")
    return "invalid settings: " + "; ".join(problems)
