"""`streamrec serve` on the real stack: Kafka, Cassandra, the job on a minicluster, the service as
its own process, and the demo page in headless Chromium.

One job and one service serve both tests (a job start costs 5-20 s on the 2-core machine): events
posted through the API reach the job and come back in the recommendations the API answers; bad
events are refused with their dead-letter codes and never reach the topic; /metrics counts exactly
the requests made; a browser clicks a product on the page and sees its panel follow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from streamrec.config import CassandraConfig, Config, JobConfig, KafkaConfig, ModelConfig
from streamrec.connectors.cassandra import drop_keyspace, ensure_schema, store_catalog
from streamrec.connectors.kafka import ensure_topics
from streamrec.runner import BackgroundJob, config_env, wait_for

from .conftest import PROFILE, REPO
from .helpers import MALFORMED

# Screenshots and logs a person can look at after the run (gitignored).
ARTIFACTS = REPO / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`streamrec serve` in its own process group, and a client that counts what it asked."""

    def __init__(self, config: Config, log_path: Path) -> None:
        self.config = config
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.asked: Counter[tuple[str, str, int]] = Counter()  # (method, route template, status)
        self._log = open(log_path, "wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "streamrec.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
            env=config_env(config), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])

    def call(self, method: str, path: str, route: str, body: Optional[Any] = None,
             raw: Optional[bytes] = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
        self.asked[(method, route, status)] += 1
        return status, json.loads(payload) if payload.strip().startswith((b"{", b"[")) else payload.decode()

    def stop(self) -> None:
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def live(services, artifacts, uci_catalog, tmp_path_factory) -> Iterator[tuple[Config, Service, BackgroundJob]]:
    tag = uuid.uuid4().hex[:8]
    config = Config(
        kafka=KafkaConfig(bootstrap=f"127.0.0.1:{PROFILE.kafka_port}", events_topic=f"events-{tag}",
                          dlq_topic=f"events-dlq-{tag}", products_topic=f"products-{tag}",
                          consumer_group=f"streamrec-{tag}"),
        cassandra=CassandraConfig(port=PROFILE.cassandra_port, keyspace=f"e2e_{tag}"),
        job=JobConfig(checkpoint_interval_ms=2000, jars=str(artifacts.kafka_connector_jar)),
        model=ModelConfig(top_k=5, trending_interval_ms=500))
    ensure_topics(config.kafka, partitions=2)
    ensure_schema(config.cassandra)
    store_catalog(config.cassandra, uci_catalog)
    logs = tmp_path_factory.mktemp("service")
    try:
        with BackgroundJob(config, logs / "job.log") as job:
            service = Service(config, logs / "service.log")
            try:
                wait_for(lambda: service.call("GET", "/readyz", "/readyz")[0] == 200, timeout=90,
                         what="the service to be ready", interval=0.5, on_timeout=service.log_tail)
                yield config, service, job
            finally:
                service.stop()
    finally:
        drop_keyspace(config.cassandra)


def _cli(config: Config, *args: str) -> Any:
    out = subprocess.run([sys.executable, "-m", "streamrec.cli", *args, "-o", "json"], env=config_env(config),
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _event(n: int, user: str, etype: str, product: Optional[str] = None, query: Optional[str] = None) -> dict:
    e = {"event_id": f"api-{user}-{n}", "user_id": user, "ts": 1_291_300_000_000 + n * 1000, "type": etype}
    if product is not None:
        e["product_id"] = product
    if query is not None:
        e["query"] = query
    return e


RECS = "/v1/users/{user_id}/recommendations"
EVENTS = "/v1/users/{user_id}/events"


def test_events_posted_to_the_api_come_back_as_recommendations(live) -> None:
    config, service, job = live
    user = "api-shopper"

    def recs_after(event_id: str) -> Any:
        def reflected() -> Any:
            status, body = service.call("GET", f"/v1/users/{user}/recommendations?k=5", RECS)
            assert status == 200
            return body if body.get("event_id") == event_id else None
        return wait_for(reflected, timeout=90, what=f"recommendations after {event_id}", interval=0.5,
                        on_timeout=lambda: job.log_tail() + "\n" + service.log_tail())

    # --- a new user posts two events; the job's row comes back through the API
    first = [_event(1, user, "view", "85123A"), _event(2, user, "click", "71053")]
    status, body = service.call("POST", "/v1/events", "/v1/events", first)
    assert (status, body) == (202, {"accepted": 2, "event_ids": ["api-api-shopper-1", "api-api-shopper-2"]})
    before = recs_after("api-api-shopper-2")
    assert before["source"] == "personal" and len(before["items"]) == 5
    assert all(i["source"] == "personal" and i["title"] for i in before["items"])
    # the same answer as the CLI's: one implementation
    assert _cli(config, "recs", user, "-k", "5") == before

    # --- a purchase through the API: the bought product leaves the user's list
    bought = before["items"][0]["product_id"]
    status, _ = service.call("POST", "/v1/events", "/v1/events", _event(3, user, "purchase", bought))
    assert status == 202
    after = recs_after("api-api-shopper-3")
    assert bought not in [i["product_id"] for i in after["items"]]
    status, stored = service.call("GET", f"/v1/users/{user}/events?n=10", EVENTS)
    assert status == 200
    assert [e["event_id"] for e in stored["events"]] == ["api-api-shopper-3", "api-api-shopper-2", "api-api-shopper-1"]

    # --- bad events: each refused with the code the dead-letter topic would carry
    for code, raw in MALFORMED:
        status, body = service.call("POST", "/v1/events", "/v1/events", raw=raw.encode())
        assert (status, body["error"], body["sent"]) == (400, code, []), raw[:80]
    # a batch with one bad event sends none of it, the good one included
    batch = [_event(4, user, "view", "22423"), _event(5, user, "view", "NO-SUCH-PRODUCT")]
    status, body = service.call("POST", "/v1/events", "/v1/events", batch)
    assert status == 400 and body["errors"] == [{"index": 1, "error": "UNKNOWN_PRODUCT",
                                                 "reason": "product 'NO-SUCH-PRODUCT' is not in the catalog"}]
    status, _ = service.call("POST", "/v1/events", "/v1/events", _event(6, user, "view", "22423"))
    assert status == 202
    recs_after("api-api-shopper-6")
    status, stored = service.call("GET", f"/v1/users/{user}/events?n=10", EVENTS)
    assert "api-api-shopper-4" not in [e["event_id"] for e in stored["events"]]

    # --- similar products and trending, from the catalog the service holds
    status, similar = service.call("GET", "/v1/products/85123A/similar?k=5", "/v1/products/{product_id}/similar")
    assert status == 200 and similar == _cli(config, "similar", "85123A", "-k", "5")

    def trending_has_bought() -> Any:
        _, body = service.call("GET", "/v1/trending?k=20", "/v1/trending")
        return bought in [i["product_id"] for i in body["items"]]
    wait_for(trending_has_bought, timeout=30, what="the purchase in the trending list", interval=0.5)

    # --- /metrics counts exactly the requests this test made, per route template and status
    status, text = service.call("GET", "/metrics", "/metrics")
    assert status == 200
    counted = {(m, r, int(s)): float(v) for m, r, s, v in re.findall(
        r'streamrec_http_requests_total\{method="(\w+)",route="([^"]+)",status="(\d+)"\} ([0-9.e+]+)', text)}
    asked = dict(service.asked)
    asked[("GET", "/metrics", 200)] -= 1  # this scrape is counted once it is answered
    if not asked[("GET", "/metrics", 200)]:
        del asked[("GET", "/metrics", 200)]
    assert counted == {key: float(n) for key, n in asked.items()}
    assert counted[("POST", "/v1/events", 400)] == len(MALFORMED) + 1
    assert job.alive(), job.log_tail()


# --- the demo page in a real browser ---------------------------------------------------------------

def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail("headless Chromium is missing: `make browser` installs Debian's chromium and chromium-driver")
    return browser, driver


def test_the_demo_page_follows_a_click_in_a_browser(live) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, service, job = live
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1360,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(executable_path=driver_path), options=options)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        driver.get(service.url + "/")
        user = driver.find_element(By.ID, "user")
        user.clear()
        user.send_keys("browser-shopper\n")
        search = driver.find_element(By.ID, "search")
        search.send_keys("lantern")
        # the grid is re-rendered per search and the panel per poll: read them whole, in the page
        wait = WebDriverWait(driver, 60, poll_frequency=0.2)
        titles = wait.until(lambda d: d.execute_script(
            "const g = document.getElementById('products');"
            "return g.dataset.query === 'lantern' ? [...g.querySelectorAll('.card')]"
            "  .map(c => [c.dataset.productId, c.querySelector('h3').textContent]) : null;"))
        assert titles and all("LANTERN" in title.upper() for _, title in titles)
        panel = ("const r = document.getElementById('recs'); return [r.dataset.eventId || '',"
                 " [...r.querySelectorAll('li')].map(li => [li.dataset.productId, li.textContent])];")
        # a user with no events yet: the panel shows trending (or nothing), never a personal list
        event_before, shown_before = driver.execute_script(panel)
        assert event_before == "" and all("trending" in text for _, text in shown_before)
        clicked = titles[0][0]
        driver.find_element(By.CSS_SELECTOR, f'.card[data-product-id="{clicked}"] button.click').click()
        # the page polls: the panel turns personal once the job has written the row of the click
        wait = WebDriverWait(driver, 90, poll_frequency=0.2)
        _, shown_after = wait.until(
            lambda d: (lambda got: got if got[0].startswith("web-") else None)(d.execute_script(panel)))
        assert shown_after and [p for p, _ in shown_after] != [p for p, _ in shown_before]
        assert all(text.endswith("personal") for _, text in shown_after)
        events = driver.find_element(By.ID, "events").text
        assert f"click {clicked}" in events
        driver.save_screenshot(str(ARTIFACTS / "demo-page.png"))
    finally:
        driver.quit()
    assert (ARTIFACTS / "demo-page.png").stat().st_size > 10_000
    assert job.alive(), job.log_tail()


# --- `make up` / `make down`: the local stack's start and stop of the service ----------------------

def test_the_local_stack_starts_the_service_on_its_port_and_stops_it(live, monkeypatch) -> None:
    from streamrec import localstack

    config, _, _ = live
    for name, value in config_env(config, base={}).items():  # the live test's keyspace and topics
        monkeypatch.setenv(name, value)
    url = localstack.start_service(PROFILE)
    try:
        assert url == f"http://127.0.0.1:{PROFILE.service_port}/"
        with urllib.request.urlopen(url + "readyz", timeout=10) as resp:
            assert json.load(resp) == {"ready": True, "checks": {"cassandra": True, "kafka": True, "catalog": True}}
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert "Recommended for you" in resp.read().decode()
        pids = localstack.status_of_service(PROFILE)
        assert pids, "the service's process is found by its run folder"
        assert localstack.start_service(PROFILE) == url  # a second start finds the running one
        assert localstack.status_of_service(PROFILE) == pids
    finally:
        localstack.stop_service(PROFILE)
    assert localstack.status_of_service(PROFILE) == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "healthz", timeout=5)
