from pathlib import Path

import pytest

from pipeline.settings import SettingsError, load_settings


def test_defaults_are_the_big_cluster() -> None:
    s = load_settings({}, environ={})
    assert s.cluster.cards == 10240 and s.bootstrap is None and s.partitions == 12


def test_flags_beat_environment_beat_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("partitions: 4\ntopic_prefix: fromfile\ncluster: {cards: 64}\n")
    env = {"CLUSTERPULSE_PARTITIONS": "6", "CLUSTERPULSE_CLUSTER__NODES_PER_LEAF": "4"}
    s = load_settings({"partitions": 9}, config_file=cfg, environ=env)
    assert (s.partitions, s.topic_prefix, s.cluster.cards, s.cluster.nodes_per_leaf) == (9, "fromfile", 64, 4)
    s = load_settings({}, config_file=cfg, environ=env)
    assert s.partitions == 6


def test_config_file_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data_dir: /srv/lake\n")
    assert load_settings({}, environ={"CLUSTERPULSE_CONFIG": str(cfg)}).data_dir == "/srv/lake"


@pytest.mark.parametrize(
    "flags, env, needles",
    [
        ({"partitions": 0}, {}, ["'partitions'", "CLUSTERPULSE_PARTITIONS", "0"]),
        ({}, {"CLUSTERPULSE_PARTITIONS": "many"}, ["'partitions'", "'many'"]),
        ({"bootstrap": "localhost"}, {}, ["'bootstrap'", "'localhost'", "HOST:PORT"]),
        ({}, {"CLUSTERPULSE_SINK__FLUSH_SECONDS": "-1"}, ["'sink.flush_seconds'", "CLUSTERPULSE_SINK__FLUSH_SECONDS"]),
        ({}, {"CLUSTERPULSE_CLUSTER__CARDS": "100"}, ["'cluster'", "multiple of cards_per_node"]),
        ({}, {"CLUSTERPULSE_COLOUR": "blue"}, ["unknown setting 'colour'"]),
    ],
)
def test_invalid_settings_name_the_setting_and_value(flags: dict, env: dict, needles: list[str]) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(flags, environ=env)
    for needle in needles:
        assert needle in str(err.value)


def test_garbage_config_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("partitions: [1,\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings({}, config_file=bad, environ={})
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SettingsError, match="must hold a mapping"):
        load_settings({}, config_file=bad, environ={})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({}, config_file=tmp_path / "missing.yaml", environ={})


def test_receivers_from_a_json_environment_variable() -> None:
    env = {"CLUSTERPULSE_NOTIFY__RECEIVERS": '[{"name": "ops", "url": "http://r:8080/hook", "secret_env": "S"}]'}
    [r] = load_settings({}, environ=env).notify.receivers
    assert (r.name, r.url, r.secret_env, r.type) == ("ops", "http://r:8080/hook", "S", "webhook")
    with pytest.raises(SettingsError, match="notify.receivers.0.url"):
        load_settings({}, environ={"CLUSTERPULSE_NOTIFY__RECEIVERS": '[{"name": "ops", "url": "ftp://x"}]'})


def test_receivers_are_checked_at_start_up(monkeypatch) -> None:
    import pytest as _pytest

    from pipeline.settings import ReceiverSettings, SettingsError, load_settings

    for url in ("http://", "https://:8080/hook", "http://host:99999/x", "http://ho st/x"):
        with _pytest.raises(SettingsError, match="notify.receivers.0.url"):
            load_settings(environ={"CLUSTERPULSE_NOTIFY__RECEIVERS": f'[{{"name": "ops", "url": "{url}"}}]'})
    monkeypatch.delenv("OPS_SECRET_UNSET", raising=False)
    receiver = ReceiverSettings(name="ops", url="http://127.0.0.1:8080/hook", secret_env="OPS_SECRET_UNSET")
    with _pytest.raises(SettingsError, match="environment variable OPS_SECRET_UNSET is not set"):
        receiver.check()
