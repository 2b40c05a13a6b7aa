"""The live page: what it shows for a stream of alerts (pipeline.ui.view), and the page itself during
a `clusterpulse run`, loaded in a real headless Chromium."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.model.schemas import Alert
from pipeline.ops.broker import free_port, stop_process
from pipeline.topology.synthetic import ClusterShape, Topology
from pipeline.ui.view import ClusterView
from tests.conftest import ROOT, clean_env, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def alert(kind: str, entity: str, status: str = "firing", root: str | None = None, at: str = "01") -> Alert:
    return Alert(
        kind=kind,
        entity=entity,
        status=status,
        starts_at=f"2026-01-01T00:00:{at}.000Z",
        severity="critical" if kind != "straggler" else "warning",
        summary=f"{entity} {kind}",
        root_cause=root,
    )


def test_cards_take_the_worst_state_their_alerts_give_and_symptoms_fold_under_their_root() -> None:
    view = ClusterView(Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2)))
    leaf = alert("switch_down", "leaf001")
    for a in (
        leaf,
        alert("card_failed", "node0003-card2", root=leaf.id, at="02"),
        alert("node_down", "node0005"),
        alert("straggler", "node0001-card4"),
        alert("thermal_throttle", "node0001-card4"),
        alert("card_failed", "node0999-card1"),
    ):  # another cluster's card: not on this page
        view.apply(a)
    state = view.snapshot()
    grid = [state["cards"][r * 8 : (r + 1) * 8] for r in range(8)]  # rail by rail, one digit per node
    assert grid[2] == "00030400" and grid[4] == "02000400" and grid[0] == "00000400"
    assert state["counts"] == {"ok": 54, "throttled": 1, "failed": 1, "silent": 8}
    assert [g["leaf"] for g in state["leaves"]] == ["leaf000", "leaf001"]
    roots = state["active"]
    assert [(r["kind"], [g["entity"] for g in r["grouped"]]) for r in roots][:1] == [
        ("switch_down", ["node0003-card2"])
    ]
    assert [s["name"] for s in state["switches"] if s["down"]] == ["leaf001"]
    # its blast radius: card 0 (rail 0) of nodes 4-7, grid columns 4-7; the silent node's card too
    assert state["radius"] == [4, 5, 6, 7]
    view.apply(alert("switch_down", "leaf001", status="resolved"))
    state = view.snapshot()
    assert state["resolved"][0]["entity"] == "leaf001" and "node0003-card2" in {r["entity"] for r in state["active"]}
    assert state["radius"] == []


def test_the_alerting_cards_are_listed_worst_first_with_their_node_and_what_is_wrong() -> None:
    topo = Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2))
    view = ClusterView(topo)
    throttle = alert("thermal_throttle", "node0001-card4")
    for a in (
        alert("card_failed", "node0006-card2"),
        alert("node_down", "node0005"),
        throttle,
        alert("straggler", "node0001-card4", root=throttle.id, at="03"),
    ):
        view.apply(a)
    state = view.snapshot()
    rows = [(p["entity"], p["node"], p["state"], [w["kind"] for w in p["what"]]) for p in state["problems"]]
    assert rows == [
        ("node0005", "node0005", "silent", ["node_down"]),  # a silent node once, not 8 times
        ("node0006-card2", "node0006", "failed", ["card_failed"]),
        ("node0001-card4", "node0001", "throttled", ["thermal_throttle", "straggler"]),
    ]
    assert state["problems"][1]["what"][0]["summary"] == "node0006-card2 card_failed"
    for p in state["problems"]:  # each row's positions are its cards in the grid
        assert {state["cards"][pos] for pos in p["pos"]} == {str(state["states"].index(p["state"]))}
    assert len(state["problems"][0]["pos"]) == 8


def test_a_root_counts_what_it_groups_keeps_every_grouped_alert_and_names_each_alert_s_cards() -> None:
    topo = Topology(ClusterShape(cards=512, cards_per_node=8, nodes_per_leaf=64, spines=2))  # one leaf per rail
    view = ClusterView(topo)
    leaf = alert("switch_down", "leaf003")  # rail 3 of all 64 nodes
    view.apply(leaf)
    for node in range(64):
        view.apply(alert("link_down", topo.host_link_name(node, 3), root=leaf.id, at="02"))
    view.apply(alert("link_flapping", "leaf003~spine001", root=leaf.id, at="03"))
    view.apply(alert("card_failed", "node0009-card1", at="04"))
    root = next(a for a in view.snapshot()["active"] if a["id"] == leaf.id)
    assert root["grouped_kinds"] == {"link_down": 64, "link_flapping": 1}  # most first
    assert len(root["grouped"]) == 65  # the JSON stays complete; only the page folds it
    n = topo.nodes
    assert root["pos"] == [3 * n + column for column in range(n)]  # its blast radius: rail 3
    by_entity = {g["entity"]: g["pos"] for g in root["grouped"]}
    column = view.snapshot()["nodes"].index("node0007")
    assert by_entity[topo.host_link_name(7, 3)] == [3 * n + column]  # the card behind the link
    assert by_entity["leaf003~spine001"] == []  # a fabric link has no card
    failed = next(a for a in view.snapshot()["active"] if a["kind"] == "card_failed")
    assert failed["pos"] == [1 * n + view.snapshot()["nodes"].index("node0009")] and failed["grouped_kinds"] == {}


def test_the_event_time_is_the_newest_time_any_alert_record_names() -> None:
    view = ClusterView(Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2)))
    assert view.snapshot()["event_time"] is None
    view.apply(alert("card_failed", "node0001-card1", at="05"))
    view.apply(alert("straggler", "node0002-card1", at="03"))  # published late: older than the newest
    assert view.snapshot()["event_time"] == "2026-01-01T00:00:05.000Z"
    done = alert("card_failed", "node0001-card1", status="resolved", at="05")
    done.ends_at = "2026-01-01T00:00:41.000Z"
    view.apply(done)
    assert view.snapshot()["event_time"] == "2026-01-01T00:00:41.000Z"


def page_lake(root: Path, topo: Topology) -> None:
    """A lake for the page: node i's cards at 40 + i °C (newest at t=2 s), rank 3 of job train slow."""
    from pipeline.lake.parquet import ParquetSink
    from tests.builders import card_batch, step_batch

    sink = ParquetSink(root, topology=topo)
    for t in range(3):
        for node in range(topo.nodes):
            batch = card_batch(topo.node_name(node), t)
            batch.columns["temp_c"][:] = 40.0 + node
            sink.add_batch("cp.telemetry.card", 0, t * topo.nodes + node, batch)
    sink.flush("cp.telemetry.card", 0)
    for step in range(20):
        compute = [1.0] * 8
        compute[3] = 1.4
        batch = step_batch("node0000", "train", 0.1 * step, list(range(8)), step, compute)
        sink.add_batch("cp.telemetry.step", 0, step, batch)
    sink.flush("cp.telemetry.step", 0)


@contextlib.contextmanager
def serve_view(view: ClusterView, lake: Path | None, silences: Any = None) -> Iterator[str]:
    """The page's server for a view the test feeds itself (no broker); yields its URL."""
    import asyncio
    import threading

    from aiohttp import web

    from pipeline.ui.server import AlertFeed, make_app

    feed = AlertFeed("127.0.0.1:9", "unused", view, silences)  # never started: the test applies the alerts
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(feed, "test cluster", None if lake is None else str(lake)), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_the_endpoints_give_units_ranges_and_the_event_time_of_the_newest_data(tmp_path: Path) -> None:
    topo = Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2))
    page_lake(tmp_path, topo)
    view = ClusterView(topo)
    view.apply(alert("card_failed", "node0001-card1", at="01"))
    with serve_view(view, tmp_path) as url:
        temps = json.loads(get(url + "api/metric?name=temp_c"))
        assert (temps["unit"], temps["min"], temps["max"], len(temps["values"])) == ("°C", 40.0, 47.0, 64)
        assert temps["label"] == "temperature, °C"
        state = json.loads(get(url + "api/state"))
        assert state["event_time"] == "2026-01-01T00:00:01.000Z"  # the newest alert
        assert state["data_time"] == "2026-01-01T00:00:02.000Z"  # the newest sample in the lake
        assert {"cards", "counts", "active", "resolved", "radius", "problems"} <= set(state)
        jobs = json.loads(get(url + "api/jobs"))
        assert jobs["unit"] == "s" and jobs["jobs"]["train"]["steps"]
    with serve_view(ClusterView(topo), None) as url:
        assert json.loads(get(url + "api/state"))["data_time"] is None


class DevTools:
    """One tab of a headless Chromium, driven over the DevTools protocol (a websocket)."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.next_id = ws, 0

    async def send(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:  # skip the events the tab sends meanwhile
            message = await self.ws.receive_json()
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    async def js(self, expression: str) -> Any:
        """The value of a script in the page (awaited if a promise); a thrown error fails the test."""
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def until(self, condition: str) -> Any:
        """The first truthy value of `condition`, checked in the page until it holds; fails after a
        minute (a guard, not a measurement)."""
        return await self.js(f"""new Promise((done, fail) => {{ const give_up = Date.now() + 60000;
            (function check() {{ let v; try {{ v = ({condition}); }} catch (e) {{ v = null; }}
              if (v) done(v); else if (Date.now() > give_up) fail(new Error("never: " + {json.dumps(condition)}));
              else setTimeout(check, 50); }})(); }})""")


@contextlib.asynccontextmanager
async def chromium_tab(url: str, profile: Path) -> Any:
    """A headless Chromium showing `url`, as a DevTools; the browser stops afterwards."""
    import asyncio

    import aiohttp

    browser = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"  # the browser writes its port here once it listens
        for _ in range(600):
            if port_file.exists() and port_file.read_text().strip():
                break
            assert browser.poll() is None, "chromium exited"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                tab = next(t for t in await resp.json() if t["type"] == "page")
            async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                devtools = DevTools(ws)
                await devtools.send("Page.navigate", url=url)
                yield devtools
    finally:
        stop_process(browser, timeout_s=10)


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (make test installs it when run as root with apt)")
def test_the_page_marks_failed_cards_folds_grouped_alerts_and_labels_its_scales(tmp_path: Path) -> None:
    import asyncio

    topo = Topology(ClusterShape(cards=512, cards_per_node=8, nodes_per_leaf=64, spines=2))  # one leaf per rail
    page_lake(tmp_path / "lake", topo)
    view = ClusterView(topo)
    leaf = alert("switch_down", "leaf003")
    view.apply(leaf)
    for node in range(64):
        view.apply(alert("link_down", topo.host_link_name(node, 3), root=leaf.id, at="01"))
    failed = alert("card_failed", "node0005-card0", at="01")  # rail 0: apart from rail 3
    view.apply(failed)
    view.apply(alert("node_down", "node0010", at="01"))
    slow = alert("straggler", "node0000-card3", at="01")
    slow.labels = {"job": "train", "rank": "3"}  # its line on the job's chart
    view.apply(slow)
    from datetime import UTC, datetime, timedelta

    from pipeline.model.matchers import Matcher
    from pipeline.notify.silences import Silence, SilenceBook

    book = SilenceBook()  # planned work on node0020: its card's alert is recorded, greyed, paged to no one
    now = datetime.now(UTC)
    quiet = Silence.new([Matcher.parse("node=node0020")], now, now + timedelta(hours=2), "ops", "card swap", now)
    book.apply(quiet)
    silenced = alert("card_ecc", "node0020-card1", at="01")
    silenced.silenced_by = (quiet.id,)
    view.apply(silenced)
    (tmp_path / "profile").mkdir()

    def pixel(pos: int, dx: str, dy: str) -> str:
        """Script: the color of the grid's pixel (dx, dy) from the corner of the card at `pos`."""
        return (
            f"(at => [...at.canvas.getContext('2d').getImageData(at.x + {dx}, at.y + {dy}, 1, 1).data"
            f".slice(0, 3)])(cellOf({pos}))"
        )

    async def drive(url: str) -> None:
        async with chromium_tab(url, tmp_path / "profile") as tab:
            await tab.until("typeof last === 'object' && last && draws > 0")
            # 1. the failed and alerting cards as a list, worst first, each with its node and what is wrong
            rows = await tab.js("[...document.querySelectorAll('#problems tr')].map(r => r.innerText)")
            assert len(rows) == 4 and "node0010" in rows[0] and "node_down" in rows[0], rows
            assert "node0005-card0\tnode0005" in rows[1] and "card_failed" in rows[1], rows
            # a failed card is ringed: pixels beside it, over its ok neighbours, take the failed color
            red, blue, failed_at = [0xE5, 0x48, 0x4D], [0x4F, 0xC3, 0xFF], view.position(5, 0)
            assert await tab.js(pixel(failed_at, "-3", "1")) == await tab.js(pixel(failed_at, "1", "CELL + 2")) == red
            assert await tab.js(pixel(view.position(20, 5), "-3", "1")) != red  # an ok card's neighbour
            # a click on an alert marks its cards on the grid (and its switch); another click clears it
            assert await tab.js(pixel(failed_at, "-5", "1")) != blue
            await tab.js(f"document.querySelector('#active .alert[data-id=\"{failed.id}\"]').click()")
            assert await tab.js(pixel(failed_at, "-5", "1")) == blue
            assert "node0005-card0" in await tab.js("document.getElementById('selection').textContent")
            await tab.js(f"document.querySelector('#active .alert[data-id=\"{leaf.id}\"]').click()")
            assert await tab.js("document.querySelector('[data-switch=leaf003]').classList.contains('selected')")
            assert await tab.js(pixel(view.position(40, 3), "-5", "1")) == blue  # a card on the leaf's rail
            assert await tab.js(pixel(failed_at, "-5", "1")) != blue  # the failed card's mark went
            await tab.js(f"document.querySelector('#active .alert[data-id=\"{leaf.id}\"]').click()")
            assert await tab.js(pixel(view.position(40, 3), "-5", "1")) != blue
            await tab.js("document.querySelector('#problems tr[data-entity=node0010]').click()")  # a listed card, too
            assert "node0010" in await tab.js("document.getElementById('selection').textContent")
            assert await tab.js(pixel(view.position(10, 7), "-5", "1")) == blue
            # 5. the 64 grouped link alerts fold into a count; a click opens them, and they stay open
            root = f"document.querySelector('#active details[data-root=\"{leaf.id}\"]')"
            assert await tab.js(f"{root}.querySelector('summary').textContent") == "groups 64 alerts: 64 link_down"
            assert await tab.js(f"{root}.open") is False
            assert await tab.js(f"{root}.querySelector('li').checkVisibility()") is False  # not shown
            await tab.js(f"{root}.querySelector('summary').click()")
            seen = await tab.js("draws")
            await tab.until(f"draws > {seen} + 1")  # redrawn twice since
            assert await tab.js(f"{root}.open && {root}.querySelectorAll('li').length") == 64
            assert await tab.js(f"{root}.querySelector('li').checkVisibility()") is True
            # 3. the header gives the event time of the newest data, and says so; wall time apart
            clock = await tab.until("document.getElementById('event-time').textContent")
            assert clock == "event time 2026-01-01 00:00:02 UTC (newest data)", clock
            assert (await tab.js("document.getElementById('wall-time').textContent")).startswith("· wall clock ")
            # 2. a job chart's y axis: round ticks with units, spanning its data (1.0 to 1.4 s)
            ticks = await tab.until(
                "document.querySelector('[data-job=train] polyline[data-rank=\"3\"]') && "
                "[...document.querySelectorAll('[data-job=train] .y-axis text.tick')]"
                ".map(t => [+t.dataset.value, t.textContent])"
            )
            assert ticks == [[1.0, "1.0 s"], [1.2, "1.2 s"], [1.4, "1.4 s"]], ticks
            # 4. coloring by a metric draws its scale: min and max with units
            assert await tab.js("document.getElementById('scale').hidden")
            await tab.js(
                "(e => { e.value = 'temp_c'; e.dispatchEvent(new Event('change')); })"
                "(document.getElementById('color-by'))"
            )
            scale = await tab.until(
                "!document.getElementById('scale').hidden && document.getElementById('scale').innerText"
            )
            assert "temperature, °C" in scale and "40 °C" in scale and "103 °C" in scale, scale
            assert await tab.js(
                "[document.querySelector('#scale .lo').textContent, document.querySelector('#scale .hi').textContent]"
            ) == ["40 °C", "103 °C"]

            # 6. silences: listed with what they match, and what they cover greyed and marked
            listed = await tab.js("document.getElementById('silences').innerText")
            assert "node=node0020" in listed and "card swap" in listed and "active" in listed, listed
            marked = f"document.querySelector('#active .alert[data-id=\"{silenced.id}\"]')"
            assert await tab.js(f"{marked}.classList.contains('silenced')")
            assert "[silenced]" in await tab.js(f"{marked}.innerText")
            assert not await tab.js(
                f"document.querySelector('#active .alert[data-id=\"{failed.id}\"]').classList.contains('silenced')"
            )

    with serve_view(view, tmp_path / "lake", book) as url:
        asyncio.run(drive(url))


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read()


@pytest.mark.broker
def test_the_page_during_a_run_shows_the_failed_card_and_its_alert(tmp_path: Path) -> None:
    scenario = {
        "name": "ui-card-fails",
        "seed": 3,
        "duration_s": 90,
        "cluster": {"cards": 64, "cards_per_node": 8, "nodes_per_leaf": 4, "spines": 2},
        "jobs": [{"name": "train", "first_node": 0, "nodes": 8, "step_s": 1.0}],
        "faults": [
            {"kind": "card_failure", "target": "node0005-card2", "start_s": 10},
            {"kind": "switch_failure", "target": "leaf003", "start_s": 10},
        ],
    }  # rail 1 of nodes 4-7
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    port = free_port()
    log = open(tmp_path / "run.log", "wb")
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--scenario",
            str(path),
            "--speed",
            "3",
            "--ui-port",
            str(port),
            "--data",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        state: dict = {}
        while not {"node0005-card2", "leaf003"} <= {a["entity"] for a in state.get("active", [])}:
            assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"the page never showed the failure: {state.get('counts')}"
            time.sleep(0.5)
            try:
                state = json.loads(get(url + "api/state"))
            except OSError:
                pass
        assert f"live page: {url}" in (tmp_path / "run.log").read_text()
        page = get(url).decode()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page loads something from elsewhere"
        assert state["counts"]["failed"] == 1
        deadline = time.monotonic() + 30
        temps: dict = {}
        while len(temps) < 60 and time.monotonic() < deadline:  # the worker's first flushes
            temps = json.loads(get(url + "api/metric?name=temp_c"))["values"]
            time.sleep(0.5)
        assert len(temps) >= 60 and all(20 < t < 100 for t in temps.values()), temps
        with pytest.raises(urllib.error.HTTPError, match="400"):
            get(url + "api/metric?name=nonsense")
        jobs: dict = {}
        while "train" not in jobs and time.monotonic() < deadline + 30:
            jobs = json.loads(get(url + "api/jobs"))["jobs"]
            time.sleep(0.5)
        assert jobs["train"]["steps"] and len(jobs["train"]["median"]) == len(jobs["train"]["steps"])
        if CHROMIUM is None:
            pytest.skip(
                "the page's data is checked; a browser check needs chromium (make test installs it when "
                "run as root with apt)"
            )
        browser = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=4000",
            "--window-size=1400,1000",
        ]
        dom = subprocess.run(browser + ["--dump-dom", url], capture_output=True, text=True, timeout=90).stdout
        assert '<ul id="cards-failed"><li>node0005-card2</li></ul>' in dom, dom[-3000:]
        assert 'data-entity="node0005-card2"' in dom  # the alert is listed
        assert 'data-job="train"' in dom  # its step-time chart
        cut = re.search(r'<ul id="cards-cut">(.*?)</ul>', dom).group(1)  # the failed leaf's blast radius
        assert sorted(re.findall(r"<li>(.*?)</li>", cut)) == [f"node000{n}-card1" for n in range(4, 8)], cut
        assert re.search(r'data-switch="leaf003" class="down"', dom)
        shot = tmp_path / "page.png"
        subprocess.run(browser + [f"--screenshot={shot}", url], capture_output=True, timeout=90)
        assert shot.exists() and shot.stat().st_size > 10_000, "no screenshot"
    finally:
        stop_process(run, timeout_s=30)
        log.close()


def test_ui_without_a_broker_says_what_it_needs_in_one_line() -> None:
    done = run_cli("ui", "--ui-port", str(free_port()))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "clusterpulse: ui reads the alerts topic of a running pipeline: give "
        "--bootstrap HOST:PORT (`clusterpulse run` serves the page itself)"
    ]


def test_the_newest_value_of_each_card_comes_from_each_partition_s_newest_file(tmp_path: Path) -> None:
    import numpy as np

    from pipeline.lake.parquet import ParquetSink
    from pipeline.ui.latest import latest_values
    from tests.builders import card_batch

    sink = ParquetSink(tmp_path)
    for offset, (t, temp) in enumerate([(0, 50.0), (1, 60.0)]):  # two flushes: two files of partition 0
        batch = card_batch("node0001", t)
        batch.columns["temp_c"][:] = temp
        batch.columns["temp_c"][3] = np.nan  # card 3 does not report its temperature
        sink.add_batch("cp.telemetry.card", 0, offset, batch)
        sink.flush("cp.telemetry.card", 0)
    sink.add_batch("cp.telemetry.card", 1, 0, card_batch("node0002", 0))  # another partition
    sink.flush("cp.telemetry.card", 1)
    values = latest_values(tmp_path, "temp_c")
    assert values["node0001-card0"] == 60.0 and "node0001-card3" not in values and values["node0002-card5"] == 60.0
    assert len(values) == 15 and latest_values(tmp_path / "nothing", "util") == {}


def test_step_history_gives_each_job_its_median_and_its_straggling_ranks(tmp_path: Path) -> None:
    from pipeline.lake.parquet import ParquetSink
    from pipeline.ui.latest import step_history
    from tests.builders import step_batch

    sink = ParquetSink(
        tmp_path, topology=Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2))
    )
    for step in range(5):
        compute = [1.0] * 8
        compute[3] = 1.5  # rank 3 is slow
        sink.add_batch(
            "cp.telemetry.step", 0, step, step_batch("node0000", "train", step, list(range(8)), step, compute)
        )
        sink.flush("cp.telemetry.step", 0)
    history = step_history(tmp_path, {"train": {3}}, last_steps=3)
    assert history == {"train": {"steps": [2, 3, 4], "median": [1.0, 1.0, 1.0], "ranks": {"3": [1.5, 1.5, 1.5]}}}
    assert step_history(tmp_path / "none", {}) == {}
    from pipeline.ui.latest import latest_values

    compute = latest_values(tmp_path, "compute_s", cards_per_node=8)  # rank r on card r % 8
    assert compute["node0000-card3"] == 1.5 and compute["node0000-card0"] == 1.0 and len(compute) == 8


def test_each_switch_s_crc_rate_comes_from_its_newest_samples(tmp_path: Path) -> None:
    from pipeline.lake.parquet import ParquetSink
    from pipeline.ui.latest import switch_error_rates
    from tests.builders import port_batch

    topo = Topology(ClusterShape(cards=64, cards_per_node=8, nodes_per_leaf=4, spines=2))
    sink = ParquetSink(tmp_path, topology=topo)
    for t in range(11):  # port 2 of leaf000 gains 30 errors a second; port 4's counter resets at t=5
        batch = port_batch("leaf000", t)
        batch.columns["crc_errors"][2] = 30 * t
        batch.columns["crc_errors"][4] = 1000 if t < 5 else t
        sink.add_batch("cp.telemetry.port", 0, t, batch)
        sink.add_batch("cp.telemetry.port", 0, t, port_batch("spine000", t))
    sink.flush("cp.telemetry.port", 0)
    rates = switch_error_rates(tmp_path)
    assert rates["leaf000"] == {"crc_per_s": 30.0, "worst_link": topo.port_link("leaf000", 2), "worst_per_s": 30.0}
    assert rates["spine000"]["crc_per_s"] == 0
    assert switch_error_rates(tmp_path / "none") == {}
