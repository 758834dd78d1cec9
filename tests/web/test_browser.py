"""The dashboard in a real browser: Playwright driving Debian's Chromium against `netvigil.web.app.serve` on a free
loopback port, over a store of real measurements (webstore.py). Overview, incident page, explorer filter,
measurement page and CSV download; every request the pages make goes to the dashboard itself. Screenshots go to
the test's tmp directory and, when NETVIGIL_SCREENSHOTS names a directory, there too."""

from __future__ import annotations

import csv
import io
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from webstore import BLOCKED_ON, MEASUREMENTS, site

from netvigil.web.app import WebSettings, serve

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

pytestmark = pytest.mark.timeout(120)


def _require_browser() -> None:
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (it comes with the test extra)"
    if reason is None and not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (scripts/setup test installs Debian's chromium)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    """The real server (uvicorn through `serve`) on its own thread; the base URL and the site it serves."""
    _require_browser()
    web = site(tmp_path_factory)
    urls: list[str] = []
    ready = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve(WebSettings(store=web.store, country="AZ", publication=web.publication), "127.0.0.1", 0,
                  ready=lambda url: (urls.append(url), ready.set()), stop=stop)
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="dashboard", daemon=True)
    thread.start()
    assert ready.wait(60), "the dashboard did not start"
    assert not errors, errors
    yield urls[0].rstrip("/"), web
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Screenshots taken by the tests; copied to $NETVIGIL_SCREENSHOTS at the end when it is set."""
    taken: list[Path] = []
    yield taken
    target = os.environ.get("NETVIGIL_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for p in taken:
            shutil.copy2(p, Path(target) / p.name)


@pytest.fixture(scope="module")
def shot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, shot_dir: Path, shots: list[Path]):
    """A fresh page that records every request it makes; asserts afterwards that all went to the dashboard."""
    base, _ = server
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    requested: list[str] = []
    pg.on("request", lambda r: requested.append(r.url))
    failed: list[str] = []
    pg.on("requestfailed", lambda r: failed.append(r.url))
    downloads: list[str] = []  # a navigation that becomes a download is reported as an aborted request
    pg.on("download", lambda d: downloads.append(d.url))

    def snap(name: str) -> None:
        path = shot_dir / f"{name}.png"
        pg.screenshot(path=str(path), full_page=True)
        shots.append(path)

    pg.snap = snap  # type: ignore[attr-defined]
    yield pg
    context.close()
    elsewhere = [u for u in requested if not (u.startswith(base + "/") or u == base)]
    assert elsewhere == [], f"requests outside the dashboard: {elsewhere}"
    assert [u for u in failed if u not in downloads] == [], f"failed requests: {failed}"


def test_overview(page, server) -> None:
    base, web = server
    page.goto(base + "/")
    assert "AZ" in page.inner_text("h1")
    assert page.locator("#status-matrix tbody tr").count() == len({c.service for c in web.publication.matrix})
    assert page.locator("#status-matrix .state-ok").count() > 0
    assert page.inner_text("#ongoing-count") == "0"
    page.snap("overview")


def test_incident_page_from_the_list(page, server) -> None:
    base, _ = server
    page.goto(base + "/incidents")
    page.select_option("select[name=asn]", BLOCKED_ON[0])
    page.click("#incident-filters button[type=submit]")
    page.wait_for_url("**/incidents?*")
    assert page.inner_text("#incident-count") == "1"
    page.click("table a[href^='/incidents/inc-']")
    page.wait_for_url("**/incidents/inc-*")
    facts = page.inner_text("#incident-facts")
    assert "service-based" in facts and all(a in facts for a in BLOCKED_ON)
    assert page.locator("#incident-timeline li").count() == 2
    links = page.locator("#evidence tr:has(.state-blocked) a.evidence-link")
    assert links.count() > 0
    page.snap("incident")
    links.first.click()
    page.wait_for_url("**/measurements/*")
    assert page.locator("#observations tbody tr").count() > 3
    assert page.locator("#observations tr.decisive").count() >= 1
    assert "wc.tls.blocked" in page.inner_text("#rules")
    page.snap("measurement")


def test_explorer_filter_and_csv_download(page, server, tmp_path: Path) -> None:
    base, _ = server
    page.goto(base + "/measurements")
    assert page.inner_text("#result-count") == f"{MEASUREMENTS:,}"
    page.select_option("select[name=asn]", BLOCKED_ON[1])
    page.select_option("select[name=outcome]", "blocked")
    page.click("#explorer-filters button[type=submit]")
    page.wait_for_url("**/measurements?*")
    assert page.inner_text("#result-count") == "12"
    rows = page.locator("#results tbody tr")
    assert rows.count() == 12
    assert page.locator("#results .state-blocked").count() == 12
    page.snap("explorer-filtered")
    with page.expect_download() as info:
        page.click("#csv-page")
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.name == "measurements.csv"
    table = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert len(table) == 12
    assert {(r["probe_asn"], r["outcome"], r["method"]) for r in table} == {(BLOCKED_ON[1], "blocked", "tls")}
    # The CSV rows are the page's rows, in the page's order.
    first_link = rows.first.locator("a").get_attribute("href")
    assert first_link == f"/measurements/{table[0]['measurement_uid']}"


def test_measurement_page_raw_download(page, server, tmp_path: Path) -> None:
    base, web = server
    page.goto(base + "/measurements?outcome=ok")
    page.click("#results tbody tr a")
    page.wait_for_url("**/measurements/*")
    assert "probe_asn" in page.inner_text("#envelope")
    assert page.locator(".why").first.inner_text().strip()
    with page.expect_download() as info:
        page.click("#raw-download")
    saved = tmp_path / "raw.json"
    info.value.save_as(saved)
    from netvigil.store import open_store

    uid = page.url.rsplit("/", 1)[1]
    with open_store(web.store) as store:
        assert saved.read_bytes() == store.get_raw(uid)


def test_charts_load(page, server) -> None:
    base, _ = server
    page.goto(base + "/charts")
    images = page.locator(".chart img")
    assert images.count() == 4
    page.wait_for_load_state("networkidle")
    widths = page.eval_on_selector_all(".chart img", "els => els.map(e => e.naturalWidth)")
    assert all(w > 0 for w in widths), widths
    page.snap("charts")
