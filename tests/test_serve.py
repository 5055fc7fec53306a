"""``videobert serve``: the JSON API (search, cards, range requests, what it refuses), a bounded
load on loopback, and a real headless Chromium that searches, clicks the first hit and finds the
player at the hit's start."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import run_cli
from videobert.search import Hit
from videobert.serve.cards import merge_hits

QUERY = "now the red circle moves left"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The app on loopback in a thread of this process (uvicorn, as ``videobert serve`` runs it)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def service(portable_model):
    from videobert.serve.app import SearchService

    return SearchService(portable_model["copy"], None, "cpu")


@pytest.fixture(scope="module")
def server(service):
    from videobert.serve.app import create_app

    running = Server(create_app(service, concurrent=1, queue=2))
    yield running
    running.stop()


def test_overlapping_or_touching_hits_of_one_video_are_one_card():
    hits = [Hit(1, "a", 0.0, 10.0, 0.9, "x", 0.5, 0), Hit(2, "b", 0.0, 5.0, 0.8, "y", 0.4, 1),
            Hit(3, "a", 20.0, 30.0, 0.7, "z", 0.3, 2), Hit(4, "a", 10.0, 20.0, 0.6, "x", 0.2, 3),
            Hit(5, "b", 5.0, 7.0, 0.5, "", None, 4), Hit(6, "b", 9.0, 12.0, 0.4, "w", 0.1, 5)]
    cards = merge_hits(hits)
    assert [(c.rank, c.video_id, c.start, c.end, c.score) for c in cards] == [
        (1, "a", 0.0, 30.0, 0.9), (2, "b", 0.0, 7.0, 0.8), (3, "b", 9.0, 12.0, 0.4)]
    assert cards[0].sentences == ["x", "z"] and sorted(cards[0].rows) == [0, 2, 3] and cards[0].first_stage == 0.5


def test_the_api_answers_the_hits_retrieve_finds_with_their_cards(server, service, portable_model):
    indexes = httpx.get(f"{server.url}/api/indexes").json()
    assert indexes[0]["name"] == "test_index" and indexes[0]["segments"] > 0
    answer = httpx.get(f"{server.url}/api/search", params={"q": QUERY, "top_k": 5}, timeout=60).json()
    expected = service.searchers[0].search(QUERY, 5)
    assert [(h["video_id"], h["start"], h["end"], round(h["score"], 6)) for h in answer["hits"]] == [
        (h.video_id, h.start, h.end, round(h.score, 6)) for h in expected]
    printed = run_cli("retrieve", portable_model["copy"], QUERY, "--top-k", "5", "--device", "cpu")
    assert printed.returncode == 0, printed.stderr
    rows = [line.split() for line in printed.stdout.splitlines()[1:6]]
    assert [(r[1], float(r[2])) for r in rows] == [(h["video_id"], round(h["start"], 2)) for h in answer["hits"]]
    assert 1 <= len(answer["cards"]) <= 5 and answer["words"]
    card = answer["cards"][0]
    assert card["video_url"].startswith("/api/video/0/") and 'class="vb-card"' in card["html"]
    assert "<script" not in card["html"]
    strip = httpx.get(f"{server.url}/api/filmstrip/0/{card['rows'][0]}.jpg",
                      params={"start": card["start"], "end": card["end"]}, timeout=60)
    assert strip.status_code == 200 and strip.headers["content-type"] == "image/jpeg" and strip.content[:2] == b"\xff\xd8"
    odd = httpx.get(f"{server.url}/api/search", params={"q": "zqxj vvkq", "top_k": 1}, timeout=60).json()
    assert odd["unknown_words"] == ["zqxj", "vvkq"] and odd["word_count"] == 2  # the page warns of them
    page = httpx.get(server.url).text
    assert '<input id="query"' in page and "/static/page.js" in page


def test_a_video_is_served_by_number_with_range_requests(server, service):
    path = Path(service.videos[0][0][1])
    data = path.read_bytes()
    part = httpx.get(f"{server.url}/api/video/0/0", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    tail = httpx.get(f"{server.url}/api/video/0/0", headers={"Range": f"bytes={len(data) - 10}-"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    whole = httpx.get(f"{server.url}/api/video/0/0")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("url, status, reason", [
    ("/api/search?q=", 400, "the query is empty"),
    ("/api/search?q=%20%20", 400, "the query is empty"),
    ("/api/search?q=" + "a" * 501, 400, "more than the 500 allowed"),
    ("/api/search?q=red%00circle", 400, "control characters"),
    ("/api/search?q=red&top_k=0", 400, "top_k must be 1"),
    ("/api/search?q=red&index=7", 400, "index must be 0"),
    ("/api/search?q=red&k=abc", 400, "k must be a whole number"),
    ("/api/video/0/9999", 404, "no video 9999"),
    ("/api/video/0/..%2F..%2F..%2Fetc%2Fpasswd", 404, None),
    ("/api/video/0/%2Fetc%2Fpasswd", 404, None),
    ("/static/..%2F..%2Fapi.py", 404, None),
    ("/static/page.html%00.js", 404, None),
    ("/api/filmstrip/0/99999.jpg?start=0&end=1", 404, "no segment 99999"),
    ("/api/filmstrip/0/0.jpg?start=nan&end=1", 400, "start must be a time"),
    ("/api/exemplar/99999.jpg", 404, "no exemplar"),
])
def test_what_the_api_refuses_gets_a_4xx_with_one_line(server, url, status, reason):
    answer = httpx.get(server.url + url, timeout=30)
    assert answer.status_code == status, answer.text
    if reason is not None:
        assert reason in answer.json()["error"] and "\n" not in answer.json()["error"]
    assert b"root:" not in answer.content  # nothing of the machine's files


def test_a_missing_video_shows_on_its_card_and_the_search_goes_on(portable_model, tmp_path):
    from videobert.serve.app import SearchService

    model = tmp_path / "model"
    shutil.copytree(portable_model["copy"], model)
    service = SearchService(model, None, "cpu")
    moved = {}
    for video_id, path in service.videos[0]:  # every video of the index moved away
        moved[path] = tmp_path / Path(path).name
        shutil.move(path, moved[path])
    try:
        answer = service.search(QUERY, 0, 3)
    finally:
        for old, new in moved.items():
            shutil.move(new, old)
    assert answer["hits"] and all(card["video_url"] is None for card in answer["cards"])
    assert all("missing" in card["missing"] and "video missing" in card["html"] for card in answer["cards"])


def test_a_burst_gets_answers_or_a_clear_503_and_nothing_else(service, monkeypatch):
    from videobert.serve.app import create_app

    real = service.search

    def slow(*args, **kwargs):  # a search that takes long enough for the queue to fill
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "search", slow)
    running = Server(create_app(service, concurrent=1, queue=2))
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: httpx.get(f"{running.url}/api/search", params={"q": QUERY, "top_k": 3},
                                                         timeout=120), range(40)))
    finally:
        running.stop()
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503} and codes.count(200) >= 3 and codes.count(503) >= 1, codes
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.json()["error"].startswith("busy:") and busy.headers["retry-after"] == "1"


CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
                    reason="Debian's chromium and chromium-driver are not installed")
def test_a_real_browser_searches_clicks_the_first_hit_and_plays_its_seconds(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        browser.get(server.url)
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#index option"))
        browser.find_element(By.ID, "query").send_keys(QUERY)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 120).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".vb-card"))
        first = browser.find_elements(By.CSS_SELECTOR, ".vb-card")[0]
        start, end = float(first.get_attribute("data-start")), float(first.get_attribute("data-end"))
        assert first.find_element(By.CSS_SELECTOR, ".vb-id").text and first.find_element(By.CSS_SELECTOR, ".vb-strip")
        first.find_element(By.CSS_SELECTOR, ".vb-head").click()
        current = "return document.querySelector('.vb-card video').currentTime"
        WebDriverWait(browser, 60).until(lambda b: b.execute_script(current) >= start - 0.05)
        at = browser.execute_script(current)
        assert start - 0.05 <= at <= end + 0.05, (start, at, end)
        assert "vb-playing" in first.get_attribute("class")
        browser.save_screenshot(str(tmp_path / "serve.png"))
    finally:
        browser.quit()
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    assert np.isfinite(at)
