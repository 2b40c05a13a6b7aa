"""The chat robots' messages, signatures, size limits and rate limits, without a network."""

import base64
import hashlib
import hmac
import json
import urllib.parse
from dataclasses import replace

from pipeline.notify.robots import (
    ROBOTS,
    TRUNCATED,
    RateLimit,
    dingtalk_sign,
    feishu_sign,
    fit,
    markdown,
    robot_request,
    robot_verdict,
)
from tests.builders import leaf_down_alert

LEAF = replace(
    leaf_down_alert(),
    evidence={
        **leaf_down_alert().evidence,
        "grouped": {
            "count": 32,
            "kinds": {"link_down": 32},
            "first": [{"kind": "link_down", "entity": f"node{n:04d}-nic7~leaf007", "id": str(n)} for n in range(10)],
        },
    },
)


def test_the_message_names_the_root_cause_its_blast_radius_what_it_groups_and_the_page() -> None:
    title, text = markdown(LEAF, "http://ops.example:8088/")
    assert title == "[FIRING] switch_down leaf007"
    assert "32 cards, 32 links; jobs: pretrain-a" in text and "groups 32 alerts: 32 link_down" in text
    assert "- link_down node0000-nic7~leaf007" in text and "… and 22 more" in text
    assert "[live page](http://ops.example:8088/)" in text


def test_an_oversized_message_is_cut_at_a_line_with_a_note_and_fits() -> None:
    text = "\n".join(f"- 告警 line {i}" for i in range(2000))
    cut = fit(text, 4096)
    assert len(cut.encode()) <= 4096 and cut.endswith(TRUNCATED) and cut.startswith("- 告警 line 0\n")
    assert fit("short", 4096) == "short"
    one_line = fit("告" * 5000, 4096)  # a single line over the limit: cut inside it, on a character
    assert len(one_line.encode()) <= 4096 and one_line.endswith(TRUNCATED)


def test_signatures_are_the_documented_algorithms() -> None:
    secret, stamp = b"SECexample", 1733119200123
    expected = base64.b64encode(hmac.new(secret, f"{stamp}\n{secret.decode()}".encode(), hashlib.sha256).digest())
    assert dingtalk_sign(secret, stamp) == expected.decode()
    url, body = robot_request("dingtalk", "https://robot.example/send?access_token=t", LEAF, secret, stamp / 1000)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["timestamp"] == [str(stamp)] and query["sign"] == [expected.decode()]
    assert json.loads(body)["msgtype"] == "markdown"

    seconds = 1733119200
    key = f"{seconds}\n{secret.decode()}".encode()
    assert feishu_sign(secret, seconds) == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    _, body = robot_request("feishu", "https://robot.example/hook/x", LEAF, secret, seconds)
    card = json.loads(body)
    assert card["timestamp"] == str(seconds) and card["sign"] == feishu_sign(secret, seconds)
    assert card["msg_type"] == "interactive" and card["card"]["header"]["template"] == "red"

    url, body = robot_request("wecom", "https://robot.example/send?key=k", LEAF, None, seconds)
    assert url.endswith("?key=k") and len(json.loads(body)["markdown"]["content"].encode()) <= 4096


def test_the_verdict_is_in_the_answer_and_sending_too_fast_is_retried() -> None:
    assert robot_verdict("dingtalk", '{"errcode":0,"errmsg":"ok"}') == (True, False, "")
    ok, retry, why = robot_verdict("dingtalk", '{"errcode":130101,"errmsg":"send too fast"}')
    assert not ok and retry and "130101" in why
    ok, retry, why = robot_verdict("dingtalk", '{"errcode":310000,"errmsg":"sign not match"}')
    assert not ok and not retry and "sign not match" in why
    assert robot_verdict("feishu", '{"code":0,"msg":"success"}')[0]
    assert robot_verdict("wecom", '{"errcode":45009,"errmsg":"api freq out of limit"}')[1]


def test_a_rate_limit_makes_the_next_message_wait_its_turn() -> None:
    now = [0.0]
    limit = RateLimit(ROBOTS["dingtalk"].per_minute, clock=lambda: now[0])
    for _ in range(20):
        assert limit.delay() == 0
        limit.sent.append(now[0])
        now[0] += 1.0
    assert limit.delay() == 40.0  # the 21st waits until a minute after the first
    now[0] = 60.0
    assert limit.delay() == 0
    per_second = RateLimit(100, 5, clock=lambda: now[0])
    per_second.sent.extend([60.0] * 5)
    assert per_second.delay() == 1.0  # Feishu: 5 a second
