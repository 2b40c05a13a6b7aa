"""Chat robots the operators of large GPU and NPU clusters page through: DingTalk, Feishu (Lark) and
WeCom group robots, each in its documented message format, signing, size limit and rate limit.

- `dingtalk` (`https://oapi.dingtalk.com/robot/send?access_token=...`): with a secret,
  `&timestamp=<ms>&sign=<s>` on the URL, s = the urlencoded base64 HMAC-SHA256 of
  `timestamp + "\\n" + secret` keyed by the secret; a markdown message (`title`, `text`), text at
  most 20,000 bytes; 20 messages a minute.
- `feishu` (`https://open.feishu.cn/open-apis/bot/v2/hook/...`): with a secret, `"timestamp"`
  (seconds) and `"sign"` in the body, sign = the base64 HMAC-SHA256 of an empty message keyed by
  `timestamp + "\\n" + secret`; an interactive card with one markdown element, the body at most
  20 KB; 100 messages a minute, 5 a second.
- `wecom` (`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`): the key in the URL is the
  credential; a markdown message (`content`) of at most 4,096 bytes; 20 messages a minute.

They answer HTTP 200 also when they refuse a message: the verdict is `errcode` (DingTalk, WeCom) or
`code` (Feishu) in the body, 0 for accepted. A refusal for sending too fast is retried like a 429;
any other refusal is final (dead-lettered with the robot's message). A message over the size limit
is cut at a line boundary with a note saying so; nothing is dropped for the rate limit: messages wait
their turn in the receiver's queue (`RateLimit`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.model.schemas import Alert
from pipeline.notify.payloads import Notification


@dataclass(frozen=True)
class Robot:
    name: str
    max_bytes: int  # of the markdown text (DingTalk, WeCom) or of the whole body (Feishu)
    per_minute: int
    per_second: int | None
    too_fast: frozenset[int]  # the codes that mean "sending too fast": retried


ROBOTS = {
    "dingtalk": Robot("dingtalk", 20_000, 20, None, frozenset({130101})),
    "feishu": Robot("feishu", 20_000, 100, 5, frozenset({11232, 9499})),
    "wecom": Robot("wecom", 4_096, 20, None, frozenset({45009})),
}
TRUNCATED = "\n\n… (cut to the robot's size limit; the whole alert is on the alerts topic and in the lake)"


def markdown(alert: Alert | Notification, page_url: str | None = None) -> tuple[str, str]:
    """(title, markdown text) of one alert state change: what, root cause, blast radius, what is
    grouped under it, and a link to the live page; of a group, its labels and then each alert."""
    if isinstance(alert, Notification):
        if alert.group_key is not None:
            return _group_markdown(alert, page_url)
        if alert.repeat:
            title, text = markdown(alert.alerts[0], page_url)
            return f"{title} (reminder)", text.replace(title, f"{title} (reminder)", 1)
        return markdown(alert.alerts[0], page_url)
    state = "RESOLVED" if alert.status == "resolved" else "FIRING"
    title = f"[{state}] {alert.kind} {alert.entity}"
    link = [f"[live page]({page_url})"] if page_url else []
    return title, "\n\n".join([f"### {title}", *_alert_lines(alert), *link])


def _group_markdown(notification: Notification, page_url: str | None) -> tuple[str, str]:
    """Alertmanager's title, `[FIRING:n] group labels`, then the firing alerts, then the resolved."""
    firing = [a for a in notification.alerts if a.status == "firing"]
    resolved = [a for a in notification.alerts if a.status != "firing"]
    labels = " ".join(f"{k}={v}" for k, v in notification.group_labels.items() if v) or "all"
    state = f"FIRING:{len(firing)}" if firing else "RESOLVED"
    title = f"[{state}] {labels}"
    if notification.repeat:
        title += " (reminder)"
    parts = [f"### {title}"]
    for heading, alerts in (("Firing", firing), ("Resolved", resolved)):
        if alerts:
            parts.append(f"**{heading}: {len(alerts)}**")
        for alert in alerts:
            parts.append(f"#### {alert.kind} {alert.entity}")
            parts += _alert_lines(alert)
    if page_url:
        parts.append(f"[live page]({page_url})")
    return title, "\n\n".join(parts)


def _alert_lines(alert: Alert) -> list[str]:
    lines = [f"**{alert.severity}** · {alert.summary}"]
    when = f"started {alert.starts_at}" + (f", resolved {alert.ends_at}" if alert.ends_at else "")
    lines.append(when)
    if alert.root_cause:
        lines.append(f"consequence of alert `{alert.root_cause}`")
    radius = alert.evidence.get("blast_radius")
    if radius:
        parts = [f"{radius[k]} {k}" for k in ("cards", "nodes", "links") if radius.get(k)]
        jobs = radius.get("jobs") or []
        lines.append("blast radius: " + (", ".join(parts) or "none") + (f"; jobs: {', '.join(jobs)}" if jobs else ""))
    grouped = alert.evidence.get("grouped")
    if grouped:
        kinds = ", ".join(f"{n} {k}" for k, n in grouped["kinds"].items())
        lines.append(f"groups {grouped['count']} alerts: {kinds}")
        lines += [f"- {g['kind']} {g['entity']}" for g in grouped["first"]]
        if grouped["count"] > len(grouped["first"]):
            lines.append(f"- … and {grouped['count'] - len(grouped['first'])} more")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    if labels:
        lines.append(f"labels: {labels}")
    return lines


def fit(text: str, max_bytes: int) -> str:
    """The text, or as many of its lines as fit in `max_bytes` (UTF-8) with a note that it was cut."""
    if len(text.encode()) <= max_bytes:
        return text
    budget = max_bytes - len(TRUNCATED.encode())
    kept: list[str] = []
    used = 0
    for line in text.split("\n"):
        size = len(line.encode()) + 1
        if used + size > budget:
            break
        kept.append(line)
        used += size
    if not kept:  # one line longer than the limit: cut inside it, on a character boundary
        return text.encode()[:budget].decode(errors="ignore") + TRUNCATED
    return "\n".join(kept) + TRUNCATED


def dingtalk_sign(secret: bytes, timestamp_ms: int) -> str:
    """DingTalk's signature: base64 HMAC-SHA256 of `timestamp\\nsecret` keyed by the secret (not yet urlencoded)."""
    digest = hmac.new(secret, f"{timestamp_ms}\n{secret.decode()}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: bytes, timestamp_s: int) -> str:
    """Feishu's signature: base64 HMAC-SHA256 of an empty message keyed by `timestamp\\nsecret`."""
    digest = hmac.new(f"{timestamp_s}\n{secret.decode()}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def robot_request(
    kind: str,
    url: str,
    alert: Alert | Notification,
    secret: bytes | None,
    now_s: float,
    page_url: str | None = None,
) -> tuple[str, bytes]:
    """(url, JSON body) of one message to a robot, signed at `now_s` (each attempt signs again:
    the robots refuse a timestamp an hour off)."""
    robot = ROBOTS[kind]
    notification = alert if isinstance(alert, Notification) else Notification.single(alert)
    title, text = markdown(notification, page_url)
    if kind == "dingtalk":
        body = {"msgtype": "markdown", "markdown": {"title": title, "text": fit(text, robot.max_bytes)}}
        if secret is not None:
            stamp = int(now_s * 1000)
            sign = urllib.parse.quote_plus(dingtalk_sign(secret, stamp))
            url += ("&" if "?" in url else "?") + f"timestamp={stamp}&sign={sign}"
        return url, json.dumps(body, ensure_ascii=False).encode()
    if kind == "wecom":
        body = {"msgtype": "markdown", "markdown": {"content": fit(text, robot.max_bytes)}}
        return url, json.dumps(body, ensure_ascii=False).encode()
    envelope: dict = {}
    if secret is not None:
        stamp = int(now_s)
        envelope = {"timestamp": str(stamp), "sign": feishu_sign(secret, stamp)}
    firing = [a for a in notification.alerts if a.status == "firing"]
    template = "green" if not firing else ("red" if any(a.severity == "critical" for a in firing) else "orange")

    def card(content: str) -> bytes:
        message = {
            **envelope,
            "msg_type": "interactive",
            "card": {
                "header": {"title": {"tag": "plain_text", "content": title}, "template": template},
                "elements": [{"tag": "markdown", "content": content}],
            },
        }
        return json.dumps(message, ensure_ascii=False).encode()

    overhead = len(card("")) + 64  # JSON escaping of the text may add a little
    body_bytes = card(fit(text, robot.max_bytes - overhead))
    return url, body_bytes


def robot_verdict(kind: str, text: str) -> tuple[bool, bool, str]:
    """(accepted, retry, why) of a robot's HTTP 200 answer."""
    try:
        answer = json.loads(text)
        if not isinstance(answer, dict):
            return True, False, ""
        code = int(answer.get("errcode", answer.get("code")) or 0)
        message = str(answer.get("errmsg", answer.get("msg", "")))
    except (ValueError, TypeError):
        return True, False, ""  # not JSON: the HTTP status said it was taken
    if code == 0:
        return True, False, ""
    retry = code in ROBOTS[kind].too_fast
    return False, retry, f"{kind} refused it: code {code}: {message}"[:500]


class RateLimit:
    """At most `per_minute` sends in any 60 s (and `per_second` in any 1 s): `wait()` returns when
    the next may go. One per receiver; its queue holds what waits, so nothing is dropped."""

    def __init__(
        self, per_minute: int, per_second: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.windows = [(60.0, per_minute)] + ([(1.0, per_second)] if per_second else [])
        self.sent: deque[float] = deque()
        self.clock = clock

    def delay(self) -> float:
        """Seconds until the next send is allowed (0: now)."""
        now = self.clock()
        while self.sent and now - self.sent[0] >= 60.0:
            self.sent.popleft()
        wait = 0.0
        for span, limit in self.windows:
            recent = [t for t in self.sent if now - t < span]
            if len(recent) >= limit:
                wait = max(wait, recent[-limit] + span - now)
        return wait

    async def wait(self) -> None:
        while (delay := self.delay()) > 0:
            await asyncio.sleep(delay)
        self.sent.append(self.clock())
