"""Scrape targets from a Prometheus ``scrape_configs`` file: parsing, discovery, relabeling, sharding.

Operators paste their ``prometheus.yml`` (or just its ``scrape_configs``); `load_config` parses and
validates it, `discover` turns it into the `Target` list the collector scrapes. Pure: no network,
no asyncio; file_sd files are read when `discover` is called.

Supported subset (Prometheus semantics, from prometheus/prometheus ``config/config.go``,
``model/relabel/relabel.go``, ``scrape/target.go`` and ``discovery/file/file.go``):

* top level: ``scrape_configs``; ``global.scrape_interval`` (default 1m) and
  ``global.scrape_timeout`` (default ``min(10s, interval)``) are the job defaults; the other keys of
  ``global`` (``external_labels``, ``evaluation_interval``, ...) and the other top-level sections
  (``rule_files``, ``alerting``, ``remote_write``, ``remote_read``, ``storage``, ``tracing``,
  ``runtime``, ``otlp``) are ignored. ``scrape_config_files`` is not supported (it would add jobs).
* per job: ``job_name`` (required, unique), ``scrape_interval``, ``scrape_timeout`` (defaults as
  above; must be <= the interval), ``metrics_path`` (/metrics), ``scheme`` (http|https),
  ``params`` (name -> list of values), ``honor_labels``, ``honor_timestamps`` (true),
  ``static_configs`` (``targets``, ``labels``), ``file_sd_configs`` (``files``: paths relative to
  the config file, ``*`` only in the last path element, .json/.yml/.yaml; ``refresh_interval`` 5m),
  ``relabel_configs`` and ``metric_relabel_configs`` (`apply_relabel` applies either; the collector
  applies a target's ``metric_relabel_configs`` once per series, `producers.collect.scraper.metric_relabel`).
* relabel actions: replace (default), keep, drop, keepequal, dropequal, hashmod, labelmap,
  labeldrop, labelkeep, lowercase, uppercase; fields ``source_labels``, ``separator`` (``;``),
  ``regex`` (``(.*)``, fully anchored), ``modulus``, ``target_label``, ``replacement`` (``$1``;
  ``$1``, ``${1}``, ``$name``, ``${name}`` and ``$$`` as Go's ``Regexp.Expand``), ``action``.
* keys accepted with no effect: ``scrape_protocols``, ``fallback_scrape_protocol``,
  ``metric_name_validation_scheme``, ``metric_name_escaping_scheme``, ``scrape_failure_log_file``,
  ``extra_scrape_metrics``, ``keep_dropped_targets``; keys accepted only at their Prometheus default
  (``follow_redirects: true``, ``enable_http2: true``, ``enable_compression: true``,
  ``sample_limit: 0`` and the other limits, ...) so a config dumped by Prometheus loads.
  Everything else Prometheus has (``basic_auth``, ``tls_config``, ``kubernetes_sd_configs``, ...)
  is a `ConfigError` saying "not supported by clusterpulse collect"; keys Prometheus does not have
  are a `ConfigError` saying "unknown key".

Targets are built as Prometheus 3 builds them (``PopulateLabels``): the discovered labels
(``__address__``, group labels, file_sd's ``__meta_filepath``), then ``job``,
``__scrape_interval__``, ``__scrape_timeout__``, ``__metrics_path__``, ``__scheme__`` and
``__param_<name>`` where not already set; relabeling; a target without ``__address__`` (or with a
``/`` in it) is reported as a problem; ``__meta_*`` labels are removed, ``instance`` defaults to
``__address__``; the public labels are those not starting with ``__``; the URL is
``__scheme__://__address__/__metrics_path__?params`` with ``__param_*`` replacing the first value
of a parameter. Interval and timeout come from ``__scrape_interval__``/``__scrape_timeout__``
after relabeling. No default port is added (Prometheus 3). Targets of one job with the same labels
are scraped once.

Sharding (``--shard I/N``): N collectors started with the same config and ``--shard 0/N`` ...
``--shard N-1/N`` split the fleet without talking to each other: each keeps the targets whose final
``__address__`` hashes to its index with `shard_of`, which is Prometheus's ``hashmod``. It is the
same as appending these two rules to every job's ``relabel_configs``::

    - {source_labels: [__address__], modulus: N, target_label: __tmp_shard, action: hashmod}
    - {source_labels: [__tmp_shard], regex: I, action: keep}

so a Prometheus HA pair sharded that way and the collectors agree on who scrapes what. (Exporters
reached through one proxy address, as snmp_exporter, all land on one shard: shard those with your
own hashmod rule on ``__param_target``.)

Deliberate differences: label names written in the config (``labels``, ``target_label``,
``source_labels``) must be classic names ``[a-zA-Z_][a-zA-Z0-9_]*`` (Prometheus 3 also accepts
UTF-8 names); regexes are Go RE2 syntax translated to Python's ``re`` (``\\d``, ``\\w``, ``\\s``,
``\\b`` are ASCII as in Go; ``[[:alpha:]]`` classes, ``(?P<n>..)``/``(?<n>..)``, leading ``(?i)``
and scoped ``(?i:..)`` flags, ``\\Q..\\E``, ``\\x{..}`` work; ``\\pL`` classes and flags in the
middle of a pattern are refused; lookarounds and backreferences, which RE2 lacks, are refused).
A label whose value is empty is an absent label, as in Prometheus.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import yaml

__all__ = [
    "ConfigError",
    "FileSD",
    "RelabelConfig",
    "ScrapeConfig",
    "ScrapeJob",
    "StaticGroup",
    "Target",
    "apply_relabel",
    "discover",
    "file_sd_paths",
    "load_config",
    "parse_duration",
    "parse_shard",
    "shard_of",
]


class ConfigError(ValueError):
    """A scrape config that cannot be used; the message is one line naming the file and the place."""


# ---------------------------------------------------------------------------------------------
# Durations (prometheus/common model.ParseDuration and Duration.String)

_DURATION_RE = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
_MAX_MS = (2**63 - 1) // 1_000_000  # time.Duration is int64 nanoseconds


def _q(text: str) -> str:
    """Quote like Go's %q (close enough for messages)."""
    return json.dumps(text, ensure_ascii=False)


def _duration_ms(text: Any) -> int:
    if not isinstance(text, str):
        raise ConfigError(f"not a valid duration string: {text!r}")
    if text == "0":
        return 0
    if text == "":
        raise ConfigError("empty duration string")
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        raise ConfigError(f"not a valid duration string: {_q(text)}")
    ms = sum(int(g) * unit for g, unit in zip(m.groups(), _UNITS_MS) if g)
    if ms > _MAX_MS:
        raise ConfigError(f"duration out of range: {_q(text)}")
    return ms


def parse_duration(text: str) -> float:
    """A Prometheus duration (``1s``, ``500ms``, ``1m30s``, ``2h``, ``1d``, ``0``) in seconds."""
    return _duration_ms(text) / 1000.0


def _format_duration(ms: int) -> str:
    """Prometheus's ``model.Duration.String`` (the ``__scrape_interval__`` label value)."""
    if ms == 0:
        return "0s"
    out = []
    for unit, mult, exact in (
        ("y", _UNITS_MS[0], True),
        ("w", _UNITS_MS[1], True),
        ("d", _UNITS_MS[2], False),
        ("h", _UNITS_MS[3], False),
        ("m", _UNITS_MS[4], False),
        ("s", 1000, False),
        ("ms", 1, False),
    ):
        if exact and ms % mult:
            continue
        if ms // mult > 0:
            out.append(f"{ms // mult}{unit}")
            ms -= ms // mult * mult
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Go RE2 syntax -> Python re

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_LEADING_FLAGS = re.compile(r"\(\?([imsU]+)\)")
_FLAG_GROUP = re.compile(r"\(\?([imsU]*(?:-[imsU]*)?)([:)])")
_REPEAT = re.compile(r"\{([0-9]*)(,?)([0-9]*)\}")


def _escape(src: str, i: int, in_class: bool) -> tuple[str, int]:
    """Translate the escape starting at ``src[i] == '\\'``; returns (python text, next index)."""
    if i + 1 >= len(src):
        raise ConfigError("trailing backslash at end of expression")
    c = src[i + 1]
    if c in "123456789":
        raise ConfigError(f"invalid escape sequence: `\\{c}` (RE2 has no backreferences)")
    if c in "pP":
        raise ConfigError(f"unicode class `\\{c}` is not supported by clusterpulse collect")
    if c in "CZ":
        raise ConfigError(f"invalid escape sequence: `\\{c}`")
    if c == "z":
        if in_class:
            raise ConfigError("invalid escape sequence: `\\z`")
        return "\\Z", i + 2
    if c == "Q":
        if in_class:
            raise ConfigError("`\\Q` inside a character class is not supported by clusterpulse collect")
        end = src.find("\\E", i + 2)
        literal = src[i + 2 :] if end < 0 else src[i + 2 : end]
        return re.escape(literal), len(src) if end < 0 else end + 2
    if c == "x" and i + 2 < len(src) and src[i + 2] == "{":
        end = src.find("}", i + 3)
        digits = src[i + 3 : end] if end > 0 else ""
        if not digits or any(ch not in "0123456789abcdefABCDEF" for ch in digits) or int(digits, 16) > 0x10FFFF:
            raise ConfigError("invalid escape sequence: `\\x{`")
        return f"\\U{int(digits, 16):08x}", end + 1
    return src[i : i + 2], i + 2


def _class(src: str, i: int) -> tuple[str, int]:
    """Translate the character class starting at ``src[i] == '['``."""
    out = ["["]
    j = i + 1
    if j < len(src) and src[j] == "^":
        out.append("^")
        j += 1
    if j < len(src) and src[j] == "]":
        out.append("\\]")
        j += 1
    while j < len(src):
        c = src[j]
        if src.startswith("[:", j):
            end = src.find(":]", j + 2)
            name = src[j + 2 : end] if end > 0 else ""
            if name.startswith("^"):
                raise ConfigError(f"negated class [:{name}:] is not supported by clusterpulse collect")
            if name not in _POSIX_CLASSES:
                raise ConfigError(f"invalid character class range: `[:{name}:]`")
            out.append(_POSIX_CLASSES[name])
            j = end + 2
        elif c == "\\":
            text, j = _escape(src, j, in_class=True)
            out.append(text)
        elif c == "]":
            out.append("]")
            return "".join(out), j + 1
        elif c in "[&~|":
            out.append("\\" + c)
            j += 1
        else:
            out.append(c)
            j += 1
    raise ConfigError(f"missing closing ]: `{src[i:]}`")


def _go_to_python(src: str) -> str:
    """Translate a Go RE2 pattern into an equivalent Python pattern, anchored as Prometheus does."""
    lead = ""
    i = 0
    m = _LEADING_FLAGS.match(src)
    if m:
        if "U" in m.group(1):
            raise ConfigError("flag (?U) is not supported by clusterpulse collect")
        lead, i = f"(?{m.group(1)})", m.end()
    multiline = re.search(r"\(\?[a-zA-Z]*m", src) is not None
    out: list[str] = []
    quant = ""  # "q" after a quantifier, "lazy" after its lazy marker
    while i < len(src):
        c = src[i]
        was, quant = quant, ""
        if c == "\\":
            text, i = _escape(src, i, in_class=False)
            out.append(text)
        elif c == "[":
            text, i = _class(src, i)
            out.append(text)
        elif c == "(":
            if src.startswith("(?P<", i):
                out.append("(?P<")
                i += 4
            elif src.startswith("(?<", i) and not src.startswith(("(?<=", "(?<!"), i):
                out.append("(?P<")
                i += 3
            elif src.startswith("(?:", i):
                out.append("(?:")
                i += 3
            elif src.startswith("(?", i):
                fm = _FLAG_GROUP.match(src, i)
                if fm is None:
                    raise ConfigError(
                        f"invalid or unsupported Perl syntax: `{src[i : i + 3]}` (RE2 has no "
                        "lookarounds, backreferences or atomic groups)"
                    )
                if "U" in fm.group(1):
                    raise ConfigError("flag (?U) is not supported by clusterpulse collect")
                if fm.group(2) == ")":
                    raise ConfigError(
                        f"flags `{fm.group(0)}` are supported only at the start of the "
                        "regex by clusterpulse collect; use (?flags:...)"
                    )
                out.append(fm.group(0))
                i = fm.end()
            else:
                out.append("(")
                i += 1
        elif c == "$":
            out.append("$" if multiline else "\\Z")
            i += 1
        elif c in "*+?":
            if was == "q" and c == "?":
                quant = "lazy"
            elif was:
                raise ConfigError(f"invalid nested repetition operator: `{src[i - 1 : i + 1]}`")
            else:
                quant = "q"
            out.append(c)
            i += 1
        elif c == "{":
            rm = _REPEAT.match(src, i)
            if rm is None or rm.group(1) == "":  # Go: not a repeat, a literal '{'
                out.append("\\{")
                i += 1
            else:
                if was:
                    raise ConfigError(f"invalid nested repetition operator: `{rm.group(0)}`")
                if int(rm.group(1)) > 1000 or (rm.group(3) and int(rm.group(3)) > 1000):
                    raise ConfigError(f"invalid repeat count: `{rm.group(0)}`")
                out.append(rm.group(0))
                quant = "q"
                i = rm.end()
        else:
            out.append(c)
            i += 1
    return f"{lead}(?:{''.join(out)})"


@functools.lru_cache(maxsize=1024)
def _compile(regex: str) -> re.Pattern[str]:
    """Compile a relabel regex (RE2 syntax) fully anchored; `ConfigError` if it is not valid."""
    try:
        return re.compile(_go_to_python(regex), re.ASCII)
    except re.error as e:
        raise ConfigError(f"error parsing regexp {_q(regex)}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Relabeling (model/relabel/relabel.go)

_ACTIONS = (
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RELABEL_TARGET = re.compile(r"(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+", re.ASCII)
_RELABEL_KEYS = ("source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action")


@dataclass(frozen=True)
class RelabelConfig:
    """One ``<relabel_config>``; defaults as Prometheus's. Validated (and compiled) on creation."""

    source_labels: tuple[str, ...] = ()
    separator: str = ";"
    regex: str = "(.*)"
    modulus: int = 0
    target_label: str = ""
    replacement: str = "$1"
    action: str = "replace"
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", str(self.action).lower())
        object.__setattr__(self, "source_labels", tuple(self.source_labels))
        self._validate()
        object.__setattr__(self, "pattern", _compile(self.regex))

    def _validate(self) -> None:  # noqa: C901 - a transcription of relabel.Config.Validate
        a, tl = self.action, self.target_label
        if a == "":
            raise ConfigError("relabel action cannot be empty")
        if a not in _ACTIONS:
            raise ConfigError(f"unknown relabel action {_q(a)} (one of {', '.join(_ACTIONS)})")
        for name in self.source_labels:
            if not _LABEL_NAME.fullmatch(name):
                raise ConfigError(f"{_q(name)} is not a valid label name")
        if not isinstance(self.modulus, int) or isinstance(self.modulus, bool) or self.modulus < 0:
            raise ConfigError(f"modulus must be a non-negative integer, not {self.modulus!r}")
        if a == "hashmod" and self.modulus == 0:
            raise ConfigError("relabel configuration for hashmod requires non-zero modulus")
        if a in ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal") and tl == "":
            raise ConfigError(f"relabel configuration for {a} action requires 'target_label' value")
        if a == "replace" and "$" not in tl and not _LABEL_NAME.fullmatch(tl):
            raise ConfigError(f"{_q(tl)} is invalid 'target_label' for {a} action")
        if a == "replace" and "$" in tl and not _RELABEL_TARGET.fullmatch(tl):
            raise ConfigError(f"{_q(tl)} is invalid 'target_label' for {a} action")
        if a in ("lowercase", "uppercase", "keepequal", "dropequal", "hashmod") and not _LABEL_NAME.fullmatch(tl):
            raise ConfigError(f"{_q(tl)} is invalid 'target_label' for {a} action")
        if a in ("lowercase", "uppercase", "keepequal", "dropequal") and self.replacement != "$1":
            raise ConfigError(f"'replacement' can not be set for {a} action")
        if a == "labelmap" and not _RELABEL_TARGET.fullmatch(self.replacement):
            raise ConfigError(f"{_q(self.replacement)} is invalid 'replacement' for {a} action")
        if a in ("keepequal", "dropequal") and (
            self.regex != "(.*)" or self.modulus or self.separator != ";" or self.replacement != "$1"
        ):
            raise ConfigError(f"{a} action requires only 'source_labels' and `target_label`, and no other fields")
        if a in ("labeldrop", "labelkeep") and (
            self.source_labels or tl or self.modulus or self.separator != ";" or self.replacement != "$1"
        ):
            raise ConfigError(f"{a} action requires only 'regex', and no other fields")

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "relabel_config") -> RelabelConfig:
        """Build from a YAML/JSON mapping (Prometheus field names); `ConfigError` prefixed with `where`."""
        if raw is None:
            raise ConfigError(f"{where}: empty or null relabeling rule")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a mapping, not {_kind(raw)}")
        _check_keys(raw, where, _RELABEL_KEYS, {}, {}, ())
        kwargs: dict[str, Any] = {}
        try:
            for key in ("separator", "regex", "target_label", "replacement", "action"):
                if key in raw:
                    kwargs[key] = _string(raw[key], key)
            if "source_labels" in raw:
                kwargs["source_labels"] = tuple(_string_list(raw["source_labels"], "source_labels"))
            if "modulus" in raw:
                kwargs["modulus"] = _integer(raw["modulus"], "modulus")
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


def _set(labels: dict[str, str], name: str, value: str) -> None:
    if value:
        labels[name] = value
    else:
        labels.pop(name, None)


def _extract(s: str) -> tuple[str, int, int] | None:
    """Go regexp ``extract``: the name after a ``$`` -> (name, group number or -1, chars used)."""
    if not s:
        return None
    brace = s[0] == "{"
    k = start = 1 if brace else 0
    while k < len(s) and (s[k] == "_" or s[k].isalpha() or unicodedata.category(s[k]) == "Nd"):
        k += 1
    if k == start:
        return None
    name = s[start:k]
    if brace:
        if k >= len(s) or s[k] != "}":
            return None
        k += 1
    num = 0
    for ch in name:
        if not "0" <= ch <= "9" or num >= 100_000_000:
            num = -1
            break
        num = num * 10 + ord(ch) - 48
    if name[0] == "0" and len(name) > 1:
        num = -1
    return name, num, k


def _expand(template: str, m: re.Match[str]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; unknown -> ''."""
    if "$" not in template:
        return template
    out: list[str] = []
    i = 0
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        rest = template[j + 1 :]
        if rest.startswith("$"):
            out.append("$")
            i = j + 2
            continue
        parsed = _extract(rest)
        if parsed is None:
            out.append("$")
            i = j + 1
            continue
        name, num, used = parsed
        i = j + 1 + used
        index = num if num >= 0 else m.re.groupindex.get(name, -1)
        if 0 <= index <= m.re.groups and m.group(index) is not None:
            out.append(m.group(index))


def _hashmod(value: str, modulus: int) -> int:
    digest = hashlib.md5(value.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def _relabel(cfg: RelabelConfig, labels: dict[str, str]) -> bool:
    val = cfg.separator.join(labels.get(name, "") for name in cfg.source_labels)
    action, regex = cfg.action, cfg.pattern
    if action == "drop":
        return regex.fullmatch(val) is None
    if action == "keep":
        return regex.fullmatch(val) is not None
    if action == "dropequal":
        return labels.get(cfg.target_label, "") != val
    if action == "keepequal":
        return labels.get(cfg.target_label, "") == val
    if action == "replace":
        m = regex.fullmatch(val)
        if m is not None:
            target = _expand(cfg.target_label, m)
            if _LABEL_NAME.fullmatch(target):
                _set(labels, target, _expand(cfg.replacement, m))
    elif action == "lowercase":
        _set(labels, cfg.target_label, val.lower())
    elif action == "uppercase":
        _set(labels, cfg.target_label, val.upper())
    elif action == "hashmod":
        labels[cfg.target_label] = str(_hashmod(val, cfg.modulus))
    elif action == "labelmap":
        for name, value in sorted(labels.items()):
            m = regex.fullmatch(name)
            if m is not None:
                new = _expand(cfg.replacement, m)
                if new:
                    labels[new] = value
    elif action == "labeldrop":
        for name in sorted(labels):
            if regex.fullmatch(name):
                del labels[name]
    elif action == "labelkeep":
        for name in sorted(labels):
            if not regex.fullmatch(name):
                del labels[name]
    return True


def apply_relabel(configs: Iterable[RelabelConfig], labels: Mapping[str, str]) -> dict[str, str] | None:
    """Apply relabel rules in order, as Prometheus's ``relabel.Process``; None when dropped.

    Works for target labels and for sample labels (``metric_relabel_configs``; the metric name is
    the ``__name__`` label). The input is not modified; empty values count as absent labels.
    """
    out = {k: v for k, v in labels.items() if v}
    for cfg in configs:
        if not _relabel(cfg, out):
            return None
    return out


def shard_of(value: str, shards: int) -> int:
    """The shard of `value` among `shards`: Prometheus's hashmod (md5, last 8 bytes big-endian, mod)."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"number of shards must be a positive integer, not {shards!r}")
    return _hashmod(value, shards)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N: this collector scrapes shard I of N (see module docstring)."""
    m = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text or "")
    if m is None or not int(m.group(1)) < int(m.group(2)):
        raise ConfigError(f"shard {text!r} is not I/N with 0 <= I < N (e.g. 0/4)")
    return int(m.group(1)), int(m.group(2))


# ---------------------------------------------------------------------------------------------
# The config model


@dataclass(frozen=True)
class StaticGroup:
    """One ``static_configs`` entry."""

    targets: tuple[str, ...]
    labels: dict[str, str]


@dataclass(frozen=True)
class FileSD:
    """One ``file_sd_configs`` entry; `files` are patterns already joined to the config's directory."""

    files: tuple[str, ...]
    refresh_s: float = 300.0


@dataclass(frozen=True)
class ScrapeJob:
    """One ``<scrape_config>`` after defaults and validation."""

    name: str
    interval_s: float
    timeout_s: float
    metrics_path: str = "/metrics"
    scheme: str = "http"
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    static: tuple[StaticGroup, ...] = ()
    file_sd: tuple[FileSD, ...] = ()
    relabel: tuple[RelabelConfig, ...] = ()
    metric_relabel: tuple[RelabelConfig, ...] = ()
    honor_labels: bool = False
    honor_timestamps: bool = True


@dataclass(frozen=True)
class ScrapeConfig:
    """A loaded scrape config file."""

    jobs: tuple[ScrapeJob, ...]
    path: str


@dataclass(frozen=True)
class Target:
    """One endpoint to scrape: its URL, its public labels (with ``job`` and ``instance``), timing."""

    job: str
    url: str
    address: str
    labels: dict[str, str]
    interval_s: float
    timeout_s: float
    honor_timestamps: bool
    metric_relabel: tuple[RelabelConfig, ...]
    honor_labels: bool = False

    def __hash__(self) -> int:
        return hash((self.job, self.url, frozenset(self.labels.items())))


# ---------------------------------------------------------------------------------------------
# YAML: strings stay strings (as Go's yaml.v2 decodes into string fields), duplicate keys are errors


class _Loader(yaml.SafeLoader):
    """SafeLoader resolving only null and merge implicitly: ``rack: 007`` stays "007", ``on`` "on"."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"mapping key {key!r} already defined", key_node.start_mark
                    )
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_load(text: bytes | str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _yaml_error(e: yaml.YAMLError) -> str:
    if isinstance(e, yaml.MarkedYAMLError):
        what = e.problem or e.context or "invalid YAML"
        mark = e.problem_mark or e.context_mark
        if mark is not None:
            return f"{what} at line {mark.line + 1}, column {mark.column + 1}"
        return what
    return " ".join(str(e).split())


_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _string(value: Any, key: str) -> str:
    if value is None:
        return ""  # yaml.v2: null is the zero value
    if isinstance(value, (Mapping, list)):
        raise ConfigError(f"{key}: must be a string, not {_kind(value)}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _boolean(value: Any, key: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _TRUE | _FALSE:
        return value in _TRUE
    raise ConfigError(f"{key}: must be true or false, not {_kind(value)}")


def _integer(value: Any, key: str) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.replace("_", "")
        for base in (10, 0):
            try:
                return int(text, base)
            except ValueError:
                pass
    raise ConfigError(f"{key}: must be an integer, not {_kind(value)}")


def _string_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of strings, not {_kind(value)}")
    return [_string(v, key) for v in value]


def _label_set(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: must be a mapping of label names to values, not {_kind(value)}")
    out: dict[str, str] = {}
    for name, v in value.items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
            raise ConfigError(f"{key}: {_q(str(name))} is not a valid label name")
        if v is not None and not isinstance(v, str):
            raise ConfigError(f"{key}: value of {name} must be a string, not {_kind(v)}")
        out[name] = v or ""
    return out


def _duration_field(value: Any, key: str) -> int:
    if value is None:
        return 0
    try:
        return _duration_ms(value)
    except ConfigError as e:
        raise ConfigError(f"{key}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Keys: what we honour, what we accept without effect, what Prometheus has that we refuse

_TOP_SUPPORTED = ("global", "scrape_configs")
_TOP_IGNORED = ("runtime", "rule_files", "alerting", "remote_write", "remote_read", "storage", "tracing", "otlp")
_TOP_UNSUPPORTED = ("scrape_config_files",)

_GLOBAL_SUPPORTED = ("scrape_interval", "scrape_timeout")
_GLOBAL_IGNORED = (
    "external_labels",
    "evaluation_interval",
    "rule_query_offset",
    "query_log_file",
    "scrape_failure_log_file",
    "scrape_protocols",
    "metric_name_validation_scheme",
    "metric_name_escaping_scheme",
    "extra_scrape_metrics",
    "keep_dropped_targets",
)
_LIMIT_DEFAULTS: dict[str, Any] = {
    "body_size_limit": 0,
    "sample_limit": 0,
    "target_limit": 0,
    "label_limit": 0,
    "label_name_length_limit": 0,
    "label_value_length_limit": 0,
    "scrape_native_histograms": False,
    "convert_classic_histograms_to_nhcb": False,
    "always_scrape_classic_histograms": False,
}
_GLOBAL_AT_DEFAULT = dict(_LIMIT_DEFAULTS)

_JOB_SUPPORTED = (
    "job_name",
    "scrape_interval",
    "scrape_timeout",
    "metrics_path",
    "scheme",
    "params",
    "honor_labels",
    "honor_timestamps",
    "static_configs",
    "file_sd_configs",
    "relabel_configs",
    "metric_relabel_configs",
)
_JOB_IGNORED = (
    "scrape_protocols",
    "fallback_scrape_protocol",
    "metric_name_validation_scheme",
    "metric_name_escaping_scheme",
    "scrape_failure_log_file",
    "extra_scrape_metrics",
    "keep_dropped_targets",
)
_JOB_AT_DEFAULT: dict[str, Any] = {
    **_LIMIT_DEFAULTS,
    "native_histogram_bucket_limit": 0,
    "native_histogram_min_bucket_factor": 0,
    "scrape_classic_histograms": False,
    "track_timestamps_staleness": False,
    "enable_compression": True,
    "follow_redirects": True,
    "enable_http2": True,
    "proxy_from_environment": False,
}
_SD_MECHANISMS = (
    "azure",
    "consul",
    "digitalocean",
    "docker",
    "dockerswarm",
    "dns",
    "ec2",
    "eureka",
    "gce",
    "hetzner",
    "http",
    "ionos",
    "kubernetes",
    "kuma",
    "lightsail",
    "linode",
    "marathon",
    "nerve",
    "nomad",
    "openstack",
    "ovhcloud",
    "puppetdb",
    "scaleway",
    "serverset",
    "stackit",
    "triton",
    "uyuni",
    "vultr",
)
_JOB_UNSUPPORTED = (
    "basic_auth",
    "authorization",
    "oauth2",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
    "proxy_url",
    "no_proxy",
    "proxy_connect_header",
    "http_headers",
    *(f"{sd}_sd_configs" for sd in _SD_MECHANISMS),
)


def _at_default(value: Any, default: Any) -> bool:
    if value is None:
        return True
    if isinstance(default, bool):
        try:
            return _boolean(value, "") == default
        except ConfigError:
            return False
    text = str(value).strip()
    if re.fullmatch(r"0+(\.0*)?|0+(?:[KMGTPE]i?)?B", text):
        return True
    return False


def _check_keys(
    raw: Mapping[Any, Any],
    where: str,
    supported: Iterable[str],
    ignored: Iterable[str] | dict,
    at_default: Mapping[str, Any],
    unsupported: Iterable[str],
) -> None:
    """Refuse keys outside the subset, naming the key and where it is."""
    supported = tuple(supported)
    for key in raw:
        if key in supported or key in ignored:
            continue
        if key in at_default:
            default = at_default[key]
            if _at_default(raw[key], default):
                continue
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            raise ConfigError(
                f"{where}: '{key}: {_string(raw[key], key)}' is not supported by clusterpulse "
                f"collect (only the Prometheus default {shown} is accepted)"
            )
        if key in unsupported:
            raise ConfigError(
                f"{where}: '{key}' is not supported by clusterpulse collect (supported: {', '.join(supported)})"
            )
        raise ConfigError(f"{where}: unknown key {str(key)!r} (supported: {', '.join(supported)})")


# ---------------------------------------------------------------------------------------------
# Loading

_FILE_SD_NAME = re.compile(r"[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)")


def _join_dir(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _parse_relabels(raw: Any, where: str) -> tuple[RelabelConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: must be a list, not {_kind(raw)}")
    return tuple(RelabelConfig.from_mapping(item, f"{where}[{i}]") for i, item in enumerate(raw))


def _parse_static(raw: Any, where: str) -> tuple[StaticGroup, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: must be a list, not {_kind(raw)}")
    groups = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if item is None:
            raise ConfigError(f"{here}: empty or null static config")
        if not isinstance(item, Mapping):
            raise ConfigError(f"{here}: must be a mapping with targets and labels, not {_kind(item)}")
        _check_keys(item, here, ("targets", "labels"), (), {}, ())
        try:
            groups.append(
                StaticGroup(
                    tuple(_string_list(item.get("targets"), "targets")), _label_set(item.get("labels"), "labels")
                )
            )
        except ConfigError as e:
            raise ConfigError(f"{here}: {e}") from None
    return tuple(groups)


def _parse_file_sd(raw: Any, where: str, base: str) -> tuple[FileSD, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: must be a list, not {_kind(raw)}")
    out = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{here}: must be a mapping with files and refresh_interval, not {_kind(item)}")
        _check_keys(item, here, ("files", "refresh_interval"), (), {}, ())
        try:
            files = _string_list(item.get("files"), "files")
            refresh_ms = (
                _duration_field(item["refresh_interval"], "refresh_interval") if "refresh_interval" in item else 300_000
            )
        except ConfigError as e:
            raise ConfigError(f"{here}: {e}") from None
        if not files:
            raise ConfigError(f"{here}: file service discovery config must contain at least one path name")
        for name in files:
            if not _FILE_SD_NAME.fullmatch(name):
                raise ConfigError(
                    f"{here}: path name {_q(name)} is not valid for file discovery "
                    "('*' only in the last element; .json, .yml or .yaml)"
                )
        if refresh_ms <= 0:
            raise ConfigError(f"{here}: refresh_interval must be more than 0")
        out.append(FileSD(tuple(_join_dir(base, f) for f in files), refresh_ms / 1000.0))
    return tuple(out)


def _parse_params(raw: Any) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"params: must be a mapping of names to lists of values, not {_kind(raw)}")
    return {str(k): tuple(_string_list(v, f"params.{k}")) for k, v in raw.items()}


def _parse_job(raw: Any, index: int, g_interval: int, g_timeout: int, base: str) -> ScrapeJob:
    where = f"scrape_configs[{index}]"
    if raw is None:
        raise ConfigError(f"{where}: empty or null scrape config section")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping, not {_kind(raw)}")
    name = raw.get("job_name")
    if isinstance(name, str) and name:
        where = f'{where} (job "{name}")'
    _check_keys(raw, where, _JOB_SUPPORTED, _JOB_IGNORED, _JOB_AT_DEFAULT, _JOB_UNSUPPORTED)
    try:
        name = _string(name, "job_name")
        if not name:
            raise ConfigError("job_name is empty")
        interval = _duration_field(raw.get("scrape_interval"), "scrape_interval") or g_interval
        timeout = _duration_field(raw.get("scrape_timeout"), "scrape_timeout")
        if timeout > interval:
            raise ConfigError(
                f"scrape timeout ({_format_duration(timeout)}) greater than scrape interval "
                f"({_format_duration(interval)})"
            )
        timeout = timeout or min(g_timeout, interval)
        metrics_path = _string(raw["metrics_path"], "metrics_path") if "metrics_path" in raw else "/metrics"
        scheme = _string(raw["scheme"], "scheme") if "scheme" in raw else "http"
        if scheme not in ("http", "https"):
            raise ConfigError(f"scheme: must be http or https, not {_q(scheme)}")
        params = _parse_params(raw.get("params"))
        honor_labels = _boolean(raw.get("honor_labels"), "honor_labels")
        honor_timestamps = _boolean(raw["honor_timestamps"], "honor_timestamps") if "honor_timestamps" in raw else True
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    static = _parse_static(raw.get("static_configs"), f"{where}: static_configs")
    relabel = _parse_relabels(raw.get("relabel_configs"), f"{where}: relabel_configs")
    if not relabel:  # Prometheus: "check for users putting URLs in target groups"
        for i, group in enumerate(static):
            for target in group.targets:
                if "/" in target:
                    raise ConfigError(
                        f"{where}: static_configs[{i}]: {_q(target)} is not a valid hostname "
                        "(a target is host:port; the path goes in metrics_path)"
                    )
    return ScrapeJob(
        name=name,
        interval_s=interval / 1000.0,
        timeout_s=timeout / 1000.0,
        metrics_path=metrics_path,
        scheme=scheme,
        params=params,
        static=static,
        file_sd=_parse_file_sd(raw.get("file_sd_configs"), f"{where}: file_sd_configs", base),
        relabel=relabel,
        metric_relabel=_parse_relabels(raw.get("metric_relabel_configs"), f"{where}: metric_relabel_configs"),
        honor_labels=honor_labels,
        honor_timestamps=honor_timestamps,
    )


def _parse_global(raw: Any) -> tuple[int, int]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"global: must be a mapping, not {_kind(raw)}")
    _check_keys(raw, "global", _GLOBAL_SUPPORTED, _GLOBAL_IGNORED, _GLOBAL_AT_DEFAULT, ())
    try:
        interval = _duration_field(raw.get("scrape_interval"), "scrape_interval") or 60_000
        timeout = _duration_field(raw.get("scrape_timeout"), "scrape_timeout")
    except ConfigError as e:
        raise ConfigError(f"global: {e}") from None
    if timeout > interval:
        raise ConfigError("global: global scrape timeout greater than scrape interval")
    return interval, timeout or min(10_000, interval)


def load_config(path: str) -> ScrapeConfig:
    """Parse and validate a scrape config (a whole prometheus.yml is fine); `ConfigError` otherwise."""
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        doc = _yaml_load(content)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: bad YAML: {_yaml_error(e)}") from None
    try:
        if doc is None:
            doc = {}
        if not isinstance(doc, Mapping):
            raise ConfigError(f"the top level must be a mapping with scrape_configs, not {_kind(doc)}")
        for key in _TOP_UNSUPPORTED:  # accepted when empty
            if doc.get(key):
                raise ConfigError(
                    f"top level: '{key}' is not supported by clusterpulse collect (put the jobs in scrape_configs)"
                )
        _check_keys(doc, "top level", _TOP_SUPPORTED, _TOP_IGNORED + _TOP_UNSUPPORTED, {}, ())
        g_interval, g_timeout = _parse_global(doc.get("global"))
        raw_jobs = doc.get("scrape_configs")
        if raw_jobs is None:
            raw_jobs = []
        if not isinstance(raw_jobs, list):
            raise ConfigError(f"scrape_configs: must be a list, not {_kind(raw_jobs)}")
        base = os.path.dirname(path) or "."
        jobs = tuple(_parse_job(raw, i, g_interval, g_timeout, base) for i, raw in enumerate(raw_jobs))
        seen: dict[str, int] = {}
        for i, job in enumerate(jobs):
            if job.name in seen:
                raise ConfigError(
                    f"scrape_configs[{i}]: found multiple scrape configs with job name "
                    f'"{job.name}" (first at scrape_configs[{seen[job.name]}])'
                )
            seen[job.name] = i
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return ScrapeConfig(jobs=jobs, path=path)


# ---------------------------------------------------------------------------------------------
# Discovery


def _glob(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern, include_hidden=True))


def file_sd_paths(config: ScrapeConfig) -> list[str]:
    """The files the file_sd globs match now (sorted, unique): watch their mtimes to know when to rediscover."""
    paths = {p for job in config.jobs for sd in job.file_sd for pattern in sd.files for p in _glob(pattern)}
    return sorted(paths)


def _read_sd_file(filename: str) -> list[tuple[list[str], dict[str, str]]]:
    """The target groups of one file_sd file (Prometheus's format: a list of {targets, labels})."""
    with open(filename, "rb") as f:
        content = f.read()
    if filename.lower().endswith(".json"):
        try:
            data = json.loads(content)
        except ValueError as e:
            raise ConfigError(f"bad JSON: {e}") from None
    else:
        try:
            data = _yaml_load(content)
        except yaml.YAMLError as e:
            raise ConfigError(f"bad YAML: {_yaml_error(e)}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"must be a list of target groups ({{targets, labels}}), not {_kind(data)}")
    groups = []
    for i, item in enumerate(data):
        if item is None:
            raise ConfigError(f"[{i}]: nil target group item found")
        if not isinstance(item, Mapping):
            raise ConfigError(f"[{i}]: a target group must be a mapping with targets and labels, not {_kind(item)}")
        _check_keys(item, f"[{i}]", ("targets", "labels"), (), {}, ())
        try:
            targets = item.get("targets")
            if isinstance(targets, list) and any(t is not None and not isinstance(t, str) for t in targets):
                raise ConfigError("targets: must be a list of strings")
            groups.append((_string_list(targets, "targets"), _label_set(item.get("labels"), "labels")))
        except ConfigError as e:
            raise ConfigError(f"[{i}]: {e}") from None
    return groups


def _groups(job: ScrapeJob, where: str, problems: list[str]) -> Iterable[tuple[str, list[str], dict[str, str]]]:
    """(source, targets, group labels) of the job: static groups, then each file_sd file."""
    for i, group in enumerate(job.static):
        yield f"static_configs[{i}]", list(group.targets), group.labels
    for sd in job.file_sd:
        for pattern in sd.files:
            files = _glob(pattern)
            if not files and not glob.has_magic(pattern):
                problems.append(f"{where}: file_sd {pattern}: no such file")
            for filename in files:
                try:
                    groups = _read_sd_file(filename)
                except (OSError, ConfigError) as e:
                    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    problems.append(f"{where}: file_sd {filename}: {reason}")
                    continue
                for targets, labels in groups:
                    yield filename, targets, {**labels, "__meta_filepath": filename}


def _url(labels: Mapping[str, str], params: Mapping[str, tuple[str, ...]]) -> str:
    """Prometheus's ``Target.URL``: params, with each ``__param_<name>`` replacing the first value."""
    query = {k: list(v) for k, v in params.items()}
    for name, value in labels.items():
        if name.startswith("__param_"):
            key = name[len("__param_") :]
            if query.get(key):
                query[key][0] = value
            else:
                query[key] = [value]
    path = labels.get("__metrics_path__", "")
    if path and not path.startswith("/"):
        path = "/" + path
    url = f"{labels.get('__scheme__', '')}://{labels.get('__address__', '')}{quote(path, safe='$&+,/:;=@')}"
    encoded = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k in sorted(query) for v in query[k])
    return f"{url}?{encoded}" if encoded else url


def _populate(job: ScrapeJob, address: str, group_labels: Mapping[str, str]) -> dict[str, str] | None:
    """``PopulateDiscoveredLabels`` + target relabeling; None when a rule dropped the target."""
    labels = {"__address__": address} if address else {}
    for name, value in group_labels.items():
        if name != "__address__" and value:
            labels[name] = value
    for name, value in (
        ("job", job.name),
        ("__scrape_interval__", _format_duration(round(job.interval_s * 1000))),
        ("__scrape_timeout__", _format_duration(round(job.timeout_s * 1000))),
        ("__metrics_path__", job.metrics_path),
        ("__scheme__", job.scheme),
    ):
        if not labels.get(name):
            _set(labels, name, value)
    for key, values in job.params.items():
        if values and not labels.get(f"__param_{key}"):
            _set(labels, f"__param_{key}", values[0])
    return apply_relabel(job.relabel, labels)


def _check(labels: dict[str, str]) -> tuple[int, int]:
    """The rest of ``PopulateLabels``: validate, drop ``__meta_*``, default instance; (interval, timeout) ms."""
    address = labels["__address__"]
    if "/" in address:
        raise ConfigError(f"{_q(address)} is not a valid hostname")
    scheme = labels.get("__scheme__", "")
    if scheme not in ("http", "https"):
        raise ConfigError(f"scheme {_q(scheme)} is not http or https")
    times = []
    for name, what in (("__scrape_interval__", "interval"), ("__scrape_timeout__", "timeout")):
        try:
            ms = _duration_ms(labels.get(name, ""))
        except ConfigError as e:
            raise ConfigError(f"error parsing scrape {what}: {e}") from None
        if ms == 0:
            raise ConfigError(f"scrape {what} cannot be 0")
        times.append(ms)
    if times[1] > times[0]:
        raise ConfigError(
            f"scrape timeout cannot be greater than scrape interval "
            f"({_q(labels['__scrape_timeout__'])} > {_q(labels['__scrape_interval__'])})"
        )
    for name in [n for n in labels if n.startswith("__meta_")]:
        del labels[name]
    if not labels.get("instance"):
        labels["instance"] = address
    return times[0], times[1]


def discover(config: ScrapeConfig, shard: tuple[int, int] | None = None) -> tuple[list[Target], list[str]]:
    """The targets to scrape now (reading file_sd files) and one-line problems.

    A file_sd file that cannot be read or parsed, a target left without ``__address__`` by
    relabeling, or with an invalid address, scheme, interval or timeout, is a problem; the other
    targets still load. Targets of one job with identical labels are kept once. With
    ``shard=(I, N)`` only the targets whose final ``__address__`` has `shard_of` == I are returned
    (problems of targets with no address are reported by every shard).
    """
    if shard is not None:
        index, count = shard
        if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
            raise ConfigError(f"shard {index}/{count} is not I/N with 0 <= I < N")
    targets: list[Target] = []
    problems: list[str] = []
    for job in config.jobs:
        where = f'{config.path}: job "{job.name}"'
        seen: set[tuple[tuple[str, str], ...]] = set()
        for source, addresses, group_labels in _groups(job, where, problems):
            for address in addresses:
                labels = _populate(job, address, group_labels)
                if labels is None:
                    continue
                if not labels.get("__address__"):
                    problems.append(f"{where}: target {_q(address)} ({source}): no address after relabeling")
                    continue
                if shard is not None and shard_of(labels["__address__"], shard[1]) != shard[0]:
                    continue
                try:
                    interval_ms, timeout_ms = _check(labels)
                except ConfigError as e:
                    problems.append(f"{where}: target {_q(address)} ({source}): {e}")
                    continue
                key = tuple(sorted(labels.items()))
                if key in seen:
                    continue
                seen.add(key)
                public = {k: v for k, v in sorted(labels.items()) if not k.startswith("__")}
                targets.append(
                    Target(
                        job=job.name,
                        url=_url(dict(sorted(labels.items())), job.params),
                        address=labels["__address__"],
                        labels=public,
                        interval_s=interval_ms / 1000.0,
                        timeout_s=timeout_ms / 1000.0,
                        honor_timestamps=job.honor_timestamps,
                        metric_relabel=job.metric_relabel,
                        honor_labels=job.honor_labels,
                    )
                )
    return targets, problems
