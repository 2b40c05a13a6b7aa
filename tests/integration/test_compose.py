"""docker-compose.yml: valid for Compose, every service we build runs a real CLI command, and every
stateful service keeps its data on a named volume (so it survives `docker compose down` / `up`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from pipeline.cli import build_parser
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
# where the apache/kafka image keeps its log dirs when KAFKA_LOG_DIRS is not set (its configureDefaults)
APACHE_KAFKA_DEFAULT_LOG_DIRS = "/tmp/kraft-combined-logs"
NO_COMPOSE = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (Debian package docker-compose; "
    "`make test` installs it when run as root with apt)",
)


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


@NO_COMPOSE
def test_compose_file_is_valid() -> None:
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_every_service_we_build_runs_a_real_cli_command() -> None:
    ours = {name: svc for name, svc in services().items() if "build" in svc}
    assert set(ours) >= {"topics", "worker", "simulator", "receiver", "fleet", "collector"}
    parser = build_parser()
    for name, svc in ours.items():
        args = parser.parse_args(svc["command"])  # exits (fails the test) on an unknown command or flag
        assert args.command == svc["command"][0], name


def test_workers_scale_within_the_partitions() -> None:
    svc = services()
    worker = svc["worker"]
    assert "container_name" not in worker and "ports" not in worker, "a fixed name or port stops --scale"
    assert int(worker["environment"]["CLUSTERPULSE_PARTITIONS"]) >= 3
    assert svc["kafka"]["image"].startswith("apache/kafka:")
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in svc["kafka"] and "healthcheck" in svc["receiver"]


def test_collector_scrapes_the_fleet_it_shares_a_volume_with() -> None:
    """`fleet` writes its scrape config where `collector` reads it (one named volume, mounted in both)
    and binds the name the collector reaches it by, so the targets it writes (`--host`:PORT) are
    reachable as written; both may hold a socket per target; both stay out of a plain `up`, where the
    simulator feeds the same cluster into the same topics."""
    from producers.scenario import default_scenario

    config = yaml.safe_load(COMPOSE.read_text())
    svc = config["services"]
    fleet, collector = svc["fleet"], svc["collector"]
    parser = build_parser()
    served, collect = parser.parse_args(fleet["command"]), parser.parse_args(collector["command"])
    assert served.command == "simulate" and served.serve_exporters
    assert served.host == fleet.get("hostname") == "fleet", "its targets must name an address the collector reaches"
    assert served.scrape_config == collect.scrape_config
    volume = _volume_of(served.scrape_config, _named_mounts(config, fleet))
    assert volume and volume == _volume_of(collect.scrape_config, _named_mounts(config, collector))
    assert collector["depends_on"]["fleet"]["condition"] == "service_healthy"
    topo = default_scenario().topology
    targets = topo.nodes + len(topo.switch_names)
    for name in ("fleet", "collector"):
        assert int(svc[name]["ulimits"]["nofile"]["soft"]) > 2 * targets, name
        assert svc[name].get("profiles") == ["collect"], name
    assert "profiles" not in svc["simulator"]


def test_dockerfile_entrypoint_is_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["clusterpulse"]' in text


# ---- state on named volumes ---------------------------------------------------------------------


def compose_config(path: Path = COMPOSE) -> dict:
    """The file as Compose resolves it (anchors, merges, defaults), from `docker-compose config`."""
    done = subprocess.run(
        ["docker-compose", "-f", str(path), "config"], capture_output=True, text=True, cwd=path.parent, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE items
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _named_mounts(config: dict, svc: dict) -> dict[PurePosixPath, str]:
    """Mount target -> named volume, for the service's mounts of the file's top-level volumes
    (short `name:/path[:mode]` or long `{type: volume, source, target}` syntax)."""
    named = set(config.get("volumes") or {})
    mounts = {}
    for item in svc.get("volumes") or []:
        if isinstance(item, str):
            source, _, rest = item.partition(":")
            target = rest.split(":")[0]
        elif item.get("type", "volume") == "volume":
            source, target = item.get("source", ""), item.get("target", "")
        else:
            continue
        if source in named and target:
            mounts[PurePosixPath(target)] = source
    return mounts


def _volume_of(path: str, mounts: dict[PurePosixPath, str]) -> str | None:
    p = PurePosixPath(path)
    for target, volume in mounts.items():
        if p == target or target in p.parents:
            return volume
    return None


def stateful_paths(config: dict) -> dict[str, list[str]]:
    """Service -> the paths where it keeps state that must outlive its container."""
    services = config["services"]
    kafka = _environment(services["kafka"])
    assert services["kafka"]["image"].startswith("apache/kafka:"), "the default log dir below is apache/kafka's"
    log_dirs = kafka.get("KAFKA_LOG_DIRS", APACHE_KAFKA_DEFAULT_LOG_DIRS).split(",")
    if "KAFKA_METADATA_LOG_DIR" in kafka:
        log_dirs.append(kafka["KAFKA_METADATA_LOG_DIR"])
    data_dir = _environment(services["worker"]).get("CLUSTERPULSE_DATA_DIR")
    if data_dir is None:  # the image's ENV
        found = re.search(r"^ENV CLUSTERPULSE_DATA_DIR=(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
        assert found, "the worker's data dir is set neither in docker-compose.yml nor in the Dockerfile"
        data_dir = found.group(1)
    assert "://" not in data_dir, "this check covers a local data dir"
    out = {"kafka": [d.strip() for d in log_dirs if d.strip()], "worker": [data_dir]}
    command = services["receiver"]["command"]
    if "--out" in command:
        out["receiver"] = [command[command.index("--out") + 1]]
    return out


def assert_state_on_named_volumes(config: dict) -> None:
    paths = stateful_paths(config)
    assert set(paths) >= {"kafka", "worker"}
    for name, dirs in paths.items():
        mounts = _named_mounts(config, config["services"][name])
        for path in dirs:
            assert _volume_of(path, mounts), (
                f"{name} keeps state in {path}, which is on no named volume "
                f"(mounts: {', '.join(f'{v}:{t}' for t, v in mounts.items()) or 'none'}): lost on `docker compose down`"
            )


@NO_COMPOSE
def test_stateful_services_keep_their_data_on_named_volumes() -> None:
    assert_state_on_named_volumes(compose_config())


def test_stateful_services_keep_their_data_on_named_volumes_without_compose() -> None:
    """The same check on the file as YAML (merge keys resolved by PyYAML), where Compose is missing."""
    assert_state_on_named_volumes(yaml.safe_load(COMPOSE.read_text()))
