"""producers.collect.config: Prometheus scrape_configs subset, target discovery, relabeling, sharding.

Expected values come from Prometheus itself: `TestRelabel` in prometheus/prometheus
model/relabel/relabel_test.go (inputs, rules and outputs copied case by case), its
`TestRelabelValidate`, and the snmp_exporter README's scrape config.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from producers.collect.config import (
    ConfigError,
    RelabelConfig,
    apply_relabel,
    discover,
    file_sd_paths,
    load_config,
    parse_duration,
    parse_shard,
    shard_of,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, name: str = "scrape.yml"):
    return load_config(str(write(tmp_path / name, text)))


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1s", 1.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("0", 0.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1y", 365 * 86400.0),
        ("1h30m15s250ms", 5415.25),
        ("0s", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "1.5s", "-1s", "15 s", "1m1h", "1h1h", "1S", "s", "１s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


# --- defaults, static targets, labels ---------------------------------------------------------


def test_defaults_and_static_labels(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        scrape_configs:
          - job_name: node
            static_configs:
              - targets: ["gpu-node-1:9100", "gpu-node-2:9100"]
                labels: {rack: "007", job: node-exporter}
              - targets: ["gpu-node-3:9400"]
    """,
    )
    (job,) = cfg.jobs
    assert (job.interval_s, job.timeout_s, job.metrics_path, job.scheme) == (60.0, 10.0, "/metrics", "http")
    assert job.honor_timestamps is True and job.honor_labels is False
    targets, problems = discover(cfg)
    assert problems == []
    assert [t.url for t in targets] == [
        "http://gpu-node-1:9100/metrics",
        "http://gpu-node-2:9100/metrics",
        "http://gpu-node-3:9400/metrics",
    ]
    first = targets[0]
    # The group's job label wins over job_name (PopulateLabels sets job only if unset); "007" stays a string.
    assert first.labels == {"instance": "gpu-node-1:9100", "job": "node-exporter", "rack": "007"}
    assert first.job == "node" and first.address == "gpu-node-1:9100"
    assert (first.interval_s, first.timeout_s, first.honor_timestamps) == (60.0, 10.0, True)
    assert targets[2].labels == {"instance": "gpu-node-3:9400", "job": "node"}


def test_interval_and_timeout_defaults(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        global: {scrape_interval: 5s}
        scrape_configs:
          - {job_name: a, static_configs: [{targets: [h:1]}]}
          - {job_name: b, scrape_interval: 1m30s, static_configs: [{targets: [h:1]}]}
          - {job_name: c, scrape_interval: 2s, scrape_timeout: 500ms, static_configs: [{targets: [h:1]}]}
    """,
    )
    assert [(j.interval_s, j.timeout_s) for j in cfg.jobs] == [(5.0, 5.0), (90.0, 5.0), (2.0, 0.5)]
    cfg = load(
        tmp_path,
        """
        global: {scrape_interval: 1m, scrape_timeout: 20s}
        scrape_configs:
          - {job_name: a, scrape_interval: 15s, static_configs: [{targets: [h:1]}]}
    """,
    )
    assert (cfg.jobs[0].interval_s, cfg.jobs[0].timeout_s) == (15.0, 15.0)  # min(global timeout, interval)
    targets, _ = discover(cfg)
    assert (targets[0].interval_s, targets[0].timeout_s) == (15.0, 15.0)
    assert "greater than scrape interval" in error_of(
        tmp_path,
        """
        scrape_configs:
          - {job_name: a, scrape_interval: 5s, scrape_timeout: 10s}
    """,
    )


def test_duplicate_targets_in_a_job_are_scraped_once(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        scrape_configs:
          - job_name: a
            static_configs:
              - targets: [h:1, h:1, h:2]
              - targets: [h:1]
              - targets: [h:1]
                labels: {zone: b}
          - job_name: b
            static_configs: [{targets: [h:1]}]
    """,
    )
    targets, problems = discover(cfg)
    assert problems == []
    assert [(t.job, t.address, t.labels.get("zone")) for t in targets] == [
        ("a", "h:1", None),
        ("a", "h:2", None),
        ("a", "h:1", "b"),
        ("b", "h:1", None),
    ]


def test_params_and_scheme_and_interval_labels(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        scrape_configs:
          - job_name: blackbox
            scheme: https
            metrics_path: /probe
            scrape_interval: 1m30s
            params: {module: [http_2xx, extra], "a b": ["x&y"]}
            static_configs: [{targets: ["bb:9115"]}]
            relabel_configs:
              - {source_labels: [__scrape_interval__], target_label: interval}
              - {source_labels: [__param_module], target_label: module}
              - {target_label: __param_module, replacement: tcp_connect}
    """,
    )
    (t,), problems = discover(cfg)
    assert problems == []
    # The __param_module label replaces the first value only; keys sorted, values query-escaped (Go url.Values).
    assert t.url == "https://bb:9115/probe?a+b=x%26y&module=tcp_connect&module=extra"
    assert t.labels == {"instance": "bb:9115", "interval": "1m30s", "job": "blackbox", "module": "http_2xx"}


# --- file_sd ----------------------------------------------------------------------------------


def test_file_sd_yaml_and_json_globs_and_meta_filepath(tmp_path: Path) -> None:
    write(
        tmp_path / "sd" / "gpus.yml",
        """
        - targets: ["gpu-1:9400", "gpu-2:9400"]
          labels: {rack: r1}
    """,
    )
    (tmp_path / "sd" / "nics.json").write_text(
        json.dumps([{"targets": ["nic-1:9100"], "labels": {"rack": "r2"}}, {"targets": ["nic-2:9100"]}])
    )
    (tmp_path / "sd" / "ignored.txt").write_text("not matched")
    cfg = load(
        tmp_path,
        """
        scrape_configs:
          - job_name: fleet
            file_sd_configs:
              - files: ["sd/*.yml", "sd/*.json"]
                refresh_interval: 30s
            relabel_configs:
              - source_labels: [__meta_filepath]
                regex: '.*/([^/]+)\\.(yml|json)'
                target_label: sd_file
    """,
    )
    (sd,) = cfg.jobs[0].file_sd
    assert sd.refresh_s == 30.0 and sd.files == (str(tmp_path / "sd" / "*.yml"), str(tmp_path / "sd" / "*.json"))
    assert file_sd_paths(cfg) == [str(tmp_path / "sd" / "gpus.yml"), str(tmp_path / "sd" / "nics.json")]
    targets, problems = discover(cfg)
    assert problems == []
    assert [(t.address, t.labels.get("rack"), t.labels["sd_file"]) for t in targets] == [
        ("gpu-1:9400", "r1", "gpus"),
        ("gpu-2:9400", "r1", "gpus"),
        ("nic-1:9100", "r2", "nics"),
        ("nic-2:9100", None, "nics"),
    ]
    assert all("__meta_filepath" not in t.labels for t in targets)
    assert (
        load(
            tmp_path,
            """
        scrape_configs: [{job_name: x, file_sd_configs: [{files: [a.json]}]}]
    """,
        )
        .jobs[0]
        .file_sd[0]
        .refresh_s
        == 300.0
    )


def test_malformed_file_sd_is_a_problem_and_the_rest_loads(tmp_path: Path) -> None:
    write(tmp_path / "sd" / "good.yml", "- targets: [ok:1]\n")
    write(tmp_path / "sd" / "broken.yml", "- targets: [a:1\n  labels: {\n")
    (tmp_path / "sd" / "broken.json").write_text('[{"targets": ["b:1"],')
    (tmp_path / "sd" / "wrongkey.json").write_text('[{"targets": ["c:1"], "lables": {}}]')
    (tmp_path / "sd" / "number.json").write_text('[{"targets": ["d:1"], "labels": {"a": 1}}]')
    cfg = load(
        tmp_path,
        """
        scrape_configs:
          - job_name: fleet
            file_sd_configs: [{files: ["sd/*.yml", "sd/*.json", "sd/missing.yml"]}]
            static_configs: [{targets: [static:1]}]
    """,
    )
    targets, problems = discover(cfg)
    assert [t.address for t in targets] == ["static:1", "ok:1"]
    assert len(problems) == 5 and all("\n" not in p for p in problems)
    joined = " | ".join(problems)
    for name in ("broken.yml", "broken.json", "wrongkey.json", "number.json", "missing.yml"):
        assert name in joined
    assert "'lables'" in joined


def test_file_sd_path_must_be_json_or_yaml_with_star_in_last_element(tmp_path: Path) -> None:
    assert "not valid for file discovery" in error_of(
        tmp_path,
        """
        scrape_configs: [{job_name: x, file_sd_configs: [{files: ["sd/*/targets.json"]}]}]
    """,
    )
    assert "not valid for file discovery" in error_of(
        tmp_path,
        """
        scrape_configs: [{job_name: x, file_sd_configs: [{files: ["targets.txt"]}]}]
    """,
    )


# --- relabeling: prometheus/prometheus model/relabel/relabel_test.go TestRelabel --------------

R = RelabelConfig

RELABEL_CASES = [
    # TestRelabel case 1: replace with ${1} twice.
    (
        {"a": "foo", "b": "bar", "c": "baz"},
        [R(source_labels=("a",), regex="f(.*)", target_label="d", replacement="ch${1}-ch${1}")],
        {"a": "foo", "b": "bar", "c": "baz", "d": "choo-choo"},
    ),
    # case 2: two replaces, the second sees the first's output; $1$2$2$3.
    (
        {"a": "foo", "b": "bar", "c": "baz"},
        [
            R(source_labels=("a", "b"), regex="f(.*);(.*)r", target_label="a", replacement="b${1}${2}m"),
            R(source_labels=("c", "a"), regex="(b).*b(.*)ba(.*)", target_label="d", replacement="$1$2$2$3"),
        ],
        {"a": "boobam", "b": "bar", "c": "baz", "d": "boooom"},
    ),
    # case 3: drop, before a replace that would have matched.
    (
        {"a": "foo"},
        [
            R(source_labels=("a",), regex=".*o.*", action="drop"),
            R(source_labels=("a",), regex="f(.*)", target_label="d", replacement="ch$1-ch$1"),
        ],
        None,
    ),
    # case 4: drop.
    ({"a": "foo", "b": "bar"}, [R(source_labels=("a",), regex=".*o.*", action="drop")], None),
    # case 5: the regex is anchored: ".*(b).*" over "abc".
    (
        {"a": "abc"},
        [R(source_labels=("a",), regex=".*(b).*", target_label="d", replacement="$1")],
        {"a": "abc", "d": "b"},
    ),
    # cases 6 and 7: drop that does not match ("f|o" is anchored, so it does not match "foo").
    ({"a": "foo"}, [R(source_labels=("a",), regex="no-match", action="drop")], {"a": "foo"}),
    ({"a": "foo"}, [R(source_labels=("a",), regex="f|o", action="drop")], {"a": "foo"}),
    # cases 8 and 9: keep.
    ({"a": "foo"}, [R(source_labels=("a",), regex="no-match", action="keep")], None),
    ({"a": "foo"}, [R(source_labels=("a",), regex="f.*", action="keep")], {"a": "foo"}),
    # case 10: no replacement when there is no match.
    ({"a": "boo"}, [R(source_labels=("a",), regex="f", target_label="b", replacement="bar")], {"a": "boo"}),
    # cases 11 and 12: hashmod.
    (
        {"a": "foo", "b": "bar", "c": "baz"},
        [R(source_labels=("c",), target_label="d", action="hashmod", modulus=1000)],
        {"a": "foo", "b": "bar", "c": "baz", "d": "976"},
    ),
    (
        {"a": "foo\nbar"},
        [R(source_labels=("a",), target_label="b", action="hashmod", modulus=1000)],
        {"a": "foo\nbar", "b": "734"},
    ),
    # cases 13 and 14: labelmap.
    (
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [R(regex="(b.*)", replacement="bar_${1}", action="labelmap")],
        {"a": "foo", "b1": "bar", "b2": "baz", "bar_b1": "bar", "bar_b2": "baz"},
    ),
    (
        {"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc"},
        [R(regex="__meta_(my.*)", replacement="${1}", action="labelmap")],
        {
            "a": "foo",
            "__meta_my_bar": "aaa",
            "__meta_my_baz": "bbb",
            "__meta_other": "ccc",
            "my_bar": "aaa",
            "my_baz": "bbb",
        },
    ),
    # case 15 ("valid case"): the target label is a template.
    (
        {"a": "some-name-value"},
        [R(source_labels=("a",), regex="some-([^-]+)-([^,]+)", replacement="${2}", target_label="${1}")],
        {"a": "some-name-value", "name": "value"},
    ),
    # case 16 ("invalid replacement"): ${3} expands to "", deleting the (absent) label "name".
    (
        {"a": "some-name-value"},
        [R(source_labels=("a",), regex="some-([^-]+)-([^,]+)", replacement="${3}", target_label="${1}")],
        {"a": "some-name-value"},
    ),
    # case 17 ("invalid target_labels"): targets expand to "" or invalid names and are skipped.
    (
        {"a": "some-name-0"},
        [
            R(source_labels=("a",), regex="some-([^-]+)-([^,]+)", replacement="${1}", target_label="${3}"),
            R(source_labels=("a",), regex="some-([^-]+)-([^,]+)", replacement="${1}", target_label="${3}"),
            R(source_labels=("a",), regex="some-([^-]+)(-[^,]+)", replacement="${1}", target_label="${3}"),
        ],
        {"a": "some-name-0"},
    ),
    # case 18 ("more complex real-life like usecase").
    (
        {"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar"},
        [
            R(
                source_labels=("__meta_sd_tags",),
                regex="(?:.+,|^)path:(/[^,]+).*",
                replacement="${1}",
                target_label="__metrics_path__",
            ),
            R(
                source_labels=("__meta_sd_tags",),
                regex="(?:.+,|^)job:([^,]+).*",
                replacement="${1}",
                target_label="job",
            ),
            R(
                source_labels=("__meta_sd_tags",),
                regex="(?:.+,|^)label:([^=]+)=([^,]+).*",
                replacement="${2}",
                target_label="${1}",
            ),
        ],
        {
            "__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar",
            "__metrics_path__": "/secret",
            "job": "some-job",
            "foo": "bar",
        },
    ),
    # case 19: prometheus/prometheus#12283, labeldrop then replace then keep (regexes with ^ and $).
    (
        {
            "__meta_kubernetes_pod_container_port_name": "foo",
            "__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091",
        },
        [
            R(regex="^__meta_kubernetes_pod_container_port_name$", action="labeldrop"),
            R(
                source_labels=("__meta_kubernetes_pod_annotation_XXX_metrics_port",),
                regex="(.+)",
                replacement="metrics",
                target_label="__meta_kubernetes_pod_container_port_name",
            ),
            R(source_labels=("__meta_kubernetes_pod_container_port_name",), regex="^metrics$", action="keep"),
        ],
        {
            "__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091",
            "__meta_kubernetes_pod_container_port_name": "metrics",
        },
    ),
    # cases 20 and 21: labelkeep, labeldrop.
    ({"a": "foo", "b1": "bar", "b2": "baz"}, [R(regex="(b.*)", action="labelkeep")], {"b1": "bar", "b2": "baz"}),
    ({"a": "foo", "b1": "bar", "b2": "baz"}, [R(regex="(b.*)", action="labeldrop")], {"a": "foo"}),
    # case 22: uppercase, lowercase.
    (
        {"foo": "bAr123Foo"},
        [
            R(source_labels=("foo",), action="uppercase", target_label="foo_uppercase"),
            R(source_labels=("foo",), action="lowercase", target_label="foo_lowercase"),
        ],
        {"foo": "bAr123Foo", "foo_lowercase": "bar123foo", "foo_uppercase": "BAR123FOO"},
    ),
    # cases 23 to 26: keepequal, dropequal.
    (
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [R(source_labels=("__tmp_port",), action="keepequal", target_label="__port1")],
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
    ),
    (
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [R(source_labels=("__tmp_port",), action="dropequal", target_label="__port1")],
        None,
    ),
    (
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [R(source_labels=("__tmp_port",), action="dropequal", target_label="__port2")],
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
    ),
    (
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [R(source_labels=("__tmp_port",), action="keepequal", target_label="__port2")],
        None,
    ),
]


@pytest.mark.parametrize("labels, rules, expected", RELABEL_CASES)
def test_relabel_cases_from_prometheus(labels: dict, rules: list, expected: dict | None) -> None:
    before = dict(labels)
    assert apply_relabel(rules, labels) == expected
    assert labels == before


def test_relabel_from_yaml_defaults_and_expand() -> None:
    rule = RelabelConfig.from_mapping({"target_label": "x"})
    assert (rule.action, rule.separator, rule.regex, rule.replacement) == ("replace", ";", "(.*)", "$1")
    # Go's Expand: "$1x" is the group named "1x" (empty), "$$" is "$", a lone "$" stays.
    m = RelabelConfig(
        source_labels=("a",),
        regex="(?P<host>[^:]+):(\\d+)",
        target_label="y",
        replacement="$1x|${1}x|$host|${2}|$$|$ |$10",
    )
    assert apply_relabel([m], {"a": "h:9"})["y"] == "|hx|h|9|$|$ |"
    assert apply_relabel([RelabelConfig.from_mapping({"action": "Drop", "source_labels": ["a"]})], {"a": "1"}) is None
    # regex: null is the empty regex (relabel.Config.UnmarshalYAML), which only matches "".
    assert RelabelConfig.from_mapping({"regex": None, "target_label": "abc", "replacement": "static"}).regex == ""


# TestRelabelValidate (prometheus/prometheus model/relabel/relabel_test.go) and a few more.
@pytest.mark.parametrize(
    "raw, message",
    [
        ({"action": None}, "relabel action cannot be empty"),
        ({"action": "replace"}, "requires 'target_label' value"),
        ({"action": "lowercase"}, "requires 'target_label' value"),
        ({"action": "lowercase", "target_label": "${3}"}, "\"${3}\" is invalid 'target_label'"),
        (
            {"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${1}", "target_label": "0${3}"},
            "\"0${3}\" is invalid 'target_label'",
        ),
        (
            {"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${1}", "target_label": "-${3}"},
            "\"-${3}\" is invalid 'target_label' for replace action",
        ),
        ({"action": "hashmod", "target_label": "x", "source_labels": ["a"]}, "requires non-zero modulus"),
        ({"action": "labeldrop", "regex": "x", "source_labels": ["a"]}, "requires only 'regex'"),
        ({"action": "keepequal", "target_label": "x", "regex": "a"}, "requires only 'source_labels'"),
        ({"action": "explode"}, "unknown relabel action"),
        ({"target_label": "x", "regex": "(?=a)"}, "lookarounds"),
        ({"target_label": "x", "regex": "(a)\\1"}, "backreferences"),
        ({"target_label": "x", "regex": "a(b"}, "error parsing regexp"),
        ({"target_label": "x", "regex": "a**"}, "invalid nested repetition"),
        ({"target_label": "x", "frobnicate": 1}, "unknown key 'frobnicate'"),
    ],
)
def test_relabel_validation(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        RelabelConfig.from_mapping(raw, "relabel_configs[0]")
    assert message in str(info.value) and str(info.value).startswith("relabel_configs[0]: ")


def test_go_regex_syntax() -> None:
    def matches(regex: str, value: str) -> bool:
        return (
            apply_relabel([RelabelConfig(source_labels=("a",), regex=regex, action="keep")], {"a": value}) is not None
        )

    assert matches("(?i)GPU-.*", "gpu-1") and not matches("gpu-.*", "GPU-1")
    assert not matches("a$\n", "a\n")  # Go's $ is the end of text, never before a newline
    assert matches("[[:alpha:]]+[[:digit:]]", "node7") and not matches("[[:alpha:]]+", "node7")
    assert matches("\\d+", "123") and not matches("\\d+", "١٢٣")  # \d is ASCII in Go
    assert matches("\\Qa.b\\E", "a.b") and not matches("\\Qa.b\\E", "axb")
    assert matches("(?<host>[a-z]+):\\d+", "gpu:9400")
    assert matches("\\x{41}", "A") and matches("a{,2}", "a{,2}")  # Go: "{,2}" is literal


# --- hashmod and sharding ---------------------------------------------------------------------


def test_shard_of_is_prometheus_hashmod() -> None:
    # relabel_test.go TestRelabel: hashmod of "baz" and of "foo\nbar" modulo 1000.
    assert shard_of("baz", 1000) == 976
    assert shard_of("foo\nbar", 1000) == 734
    with pytest.raises(ConfigError):
        shard_of("x", 0)


def test_parse_shard() -> None:
    assert parse_shard("0/4") == (0, 4) and parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "1/0", "-1/4", "a/b", "1", "", "1/2/3"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_shards_split_a_fleet_disjointly_and_equal_a_hashmod_rule(tmp_path: Path) -> None:
    addresses = [f"node{i:04d}:9400" for i in range(1000)]
    write(tmp_path / "fleet.json", json.dumps([{"targets": addresses}]))
    cfg = load(
        tmp_path,
        """
        scrape_configs: [{job_name: gpu, file_sd_configs: [{files: [fleet.json]}]}]
    """,
    )
    everything, problems = discover(cfg)
    assert problems == [] and len(everything) == 1000
    shards = [{t.address for t in discover(cfg, shard=(i, 4))[0]} for i in range(4)]
    assert sum(len(s) for s in shards) == 1000 and set().union(*shards) == set(addresses)
    assert all(150 < len(s) < 350 for s in shards)
    # The same split as a Prometheus hashmod + keep rule pair.
    for i in range(4):
        rules = [
            R(source_labels=("__address__",), modulus=4, target_label="__tmp_shard", action="hashmod"),
            R(source_labels=("__tmp_shard",), regex=str(i), action="keep"),
        ]
        assert shards[i] == {a for a in addresses if apply_relabel(rules, {"__address__": a}) is not None}
    with pytest.raises(ConfigError):
        discover(cfg, shard=(4, 4))


# --- errors -----------------------------------------------------------------------------------


def test_unknown_and_unsupported_keys_are_named(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """
        scrape_configs:
          - job_name: gpu
            kubernetes_sd_configs: [{role: pod}]
    """,
    )
    assert message.startswith(f"{tmp_path / 'scrape.yml'}: scrape_configs[0] (job \"gpu\"): 'kubernetes_sd_configs'")
    assert "not supported by clusterpulse collect" in message and "supported: job_name" in message
    message = error_of(
        tmp_path,
        """
        scrape_configs:
          - job_name: gpu
            scrape_intervall: 15s
    """,
    )
    assert "unknown key 'scrape_intervall'" in message and 'scrape_configs[0] (job "gpu")' in message
    for key in ("basic_auth: {username: u}", "tls_config: {insecure_skip_verify: true}"):
        assert "not supported by clusterpulse collect" in error_of(
            tmp_path,
            f"""
            scrape_configs: [{{job_name: a, {key}}}]
        """,
        )
    assert "unknown key 'scrape_confs'" in error_of(tmp_path, "scrape_confs: []\n")
    assert "unknown key 'frequency'" in error_of(tmp_path, "global: {frequency: 1m}\n")
    assert "static_configs[0]: unknown key 'target'" in error_of(
        tmp_path,
        """
        scrape_configs: [{job_name: a, static_configs: [{target: [h:1]}]}]
    """,
    )
    # A Prometheus-dumped config carries keys at their defaults; other values are refused.
    load(
        tmp_path,
        """
        scrape_configs: [{job_name: a, follow_redirects: true, enable_http2: true, sample_limit: 0,
                          scrape_protocols: [PrometheusText0.0.4], track_timestamps_staleness: false}]
    """,
    )
    assert "'sample_limit: 5000' is not supported" in error_of(
        tmp_path,
        """
        scrape_configs: [{job_name: a, sample_limit: 5000}]
    """,
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("scrape_configs: [{job_name: a, scrape_interval: 15 s}]", "not a valid duration string"),
        (
            "scrape_configs: [{job_name: a, relabel_configs: [{source_labels: [a], regex: '(', target_label: b}]}]",
            "relabel_configs[0]: error parsing regexp",
        ),
        ("scrape_configs: [{job_name: a}, {job_name: a}]", "found multiple scrape configs"),
        ("scrape_configs: [{scrape_interval: 1m}]", "job_name is empty"),
        ("scrape_configs: [{job_name: a, scheme: ftp}]", "must be http or https"),
        (
            "scrape_configs: [{job_name: a, static_configs: [{targets: ['http://h:1/metrics']}]}]",
            "not a valid hostname",
        ),
        ("scrape_configs: [{job_name: a, params: {module: if_mib}}]", "must be a list"),
        ("scrape_configs: [{job_name: a, job_name: b}]", "already defined"),
        ("scrape_configs:\n  - job_name: [a\n", "bad YAML"),
        ("- just a list\n", "top level must be a mapping"),
        ("scrape_config_files: [more/*.yml]\n", "not supported by clusterpulse collect"),
        ("global: {scrape_interval: 5s, scrape_timeout: 10s}\n", "global scrape timeout greater"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    got = error_of(tmp_path, text)
    assert message in got and got.startswith(str(tmp_path / "scrape.yml") + ": ")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: No such file or directory"):
        load_config(str(tmp_path / "nope.yml"))


def test_relabel_problems_do_not_stop_other_targets(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        scrape_configs:
          - job_name: a
            static_configs: [{targets: [keep:1, lose:1, "bad:1", slow:1]}]
            relabel_configs:
              - {source_labels: [__address__], regex: "lose:1", target_label: __address__, replacement: ""}
              - {source_labels: [__address__], regex: "bad:1", target_label: __address__, replacement: "h/x"}
              - {source_labels: [__address__], regex: "slow:1", target_label: __scrape_timeout__, replacement: 2m}
              - {source_labels: [__address__], regex: "nothing", action: drop}
    """,
    )
    targets, problems = discover(cfg)
    assert [t.address for t in targets] == ["keep:1"]
    assert len(problems) == 3
    assert "no address" in problems[0] and "not a valid hostname" in problems[1]
    assert "scrape timeout cannot be greater than scrape interval" in problems[2]


# --- whole files --------------------------------------------------------------------------------


def test_a_full_prometheus_yml_loads(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        # my global config
        global:
          scrape_interval: 15s
          evaluation_interval: 15s
          external_labels: {cluster: prod-a}
        alerting:
          alertmanagers:
            - static_configs:
                - targets: ["alertmanager:9093"]
        rule_files:
          - "first_rules.yml"
          - "second_rules.yml"
        remote_write:
          - url: http://receiver:9201/write
        storage:
          tsdb: {out_of_order_time_window: 30m}
        scrape_configs:
          - job_name: "prometheus"
            static_configs:
              - targets: ["localhost:9090"]
          - job_name: dcgm
            scrape_interval: 10s
            honor_labels: true
            honor_timestamps: false
            metric_relabel_configs:
              - source_labels: [__name__]
                regex: DCGM_FI_DEV_(.*)
                action: keep
            static_configs:
              - targets: ["gpu-node-1:9400"]
    """,
        name="prometheus.yml",
    )
    assert [j.name for j in cfg.jobs] == ["prometheus", "dcgm"]
    targets, problems = discover(cfg)
    assert problems == []
    prom, dcgm = targets
    assert (prom.interval_s, prom.timeout_s, prom.labels) == (
        15.0,
        10.0,
        {"instance": "localhost:9090", "job": "prometheus"},
    )  # external_labels not applied
    assert (dcgm.interval_s, dcgm.honor_labels, dcgm.honor_timestamps) == (10.0, True, False)
    (keep,) = dcgm.metric_relabel
    assert apply_relabel(dcgm.metric_relabel, {"__name__": "DCGM_FI_DEV_GPU_TEMP", "gpu": "0"}) is not None
    assert apply_relabel([keep], {"__name__": "go_goroutines"}) is None
    assert {prom, dcgm} == set(discover(cfg)[0])  # targets are hashable and compare by value


def test_snmp_exporter_readme_config(tmp_path: Path) -> None:
    # The classic config from prometheus/snmp_exporter's README, with switch names as targets.
    cfg = load(
        tmp_path,
        """
        scrape_configs:
          - job_name: 'snmp'
            static_configs:
              - targets:
                - leaf01
                - leaf02
            metrics_path: /snmp
            params:
              module: [if_mib]
            relabel_configs:
              - source_labels: [__address__]
                target_label: __param_target
              - source_labels: [__param_target]
                target_label: instance
              - target_label: __address__
                replacement: snmp-exporter:9116  # The SNMP exporter's real hostname:port.
    """,
    )
    targets, problems = discover(cfg)
    assert problems == []
    assert [t.url for t in targets] == [
        "http://snmp-exporter:9116/snmp?module=if_mib&target=leaf01",
        "http://snmp-exporter:9116/snmp?module=if_mib&target=leaf02",
    ]
    assert targets[0].labels == {"instance": "leaf01", "job": "snmp"}
    assert targets[0].address == "snmp-exporter:9116"
