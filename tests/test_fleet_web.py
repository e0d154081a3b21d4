"""The dashboard: pages and JSON API over the test fleet's index, plus a dump whose log and
title carry planted markup; and Debian's chromium (headless, through selenium and
chromium-driver) looking at the real server: what a user sees, and that nothing planted ran."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("starlette")

from test_fleet import built, env  # noqa: E402,F401 - `built`: the locally built index fixture
from vmcorekit.fleet import index  # noqa: E402
from vmcorekit.fleet.facts import dumps_json, facts_from_triage  # noqa: E402

EVIL_ID = "f" * 64
EVIL_SIG = "e" * 16
SCRIPT = "<script>document.title='pwned';window.pwned=1</script>"
IMG = "<img src=x onerror=\"document.title='pwned';window.pwned=2\">"


def plant(ix: Path) -> None:
    """A dump whose kernel log, title and host name hold markup (as a hostile dump's would)."""
    with index.connect(str(ix)) as con:
        tri = json.loads(con.execute("SELECT triage FROM dumps WHERE status = 'ok' AND arch = 'x86_64' LIMIT 1")
                         .fetchone()[0])
        tri["log"]["tail"].append({**tri["log"]["tail"][-1], "text": f"evil driver says {SCRIPT}"})
        tri["kernel"]["nodename"] = f"host{IMG}"
        tri["dump"]["path"] = "/fleet/evil/vmcore"
        f = facts_from_triage(tri)
        f.update(content_id=EVIL_ID, path="/fleet/evil/vmcore", parts=1, size=1, status="ok", signature=EVIL_SIG,
                 title=f"BUG: {SCRIPT} in evil_fn", triage=dumps_json(tri), ingested_at=time.time(), kind="panic",
                 rules_version="test")
        f["class"] = "panic"
    index.write_batch(str(ix), [f], [("/fleet/evil/vmcore", 1, 1, EVIL_ID)])


@pytest.fixture(scope="module")
def web_index(built: tuple[Path, Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    ix = tmp_path_factory.mktemp("web") / "fleet.duckdb"
    shutil.copy(built[1], ix)
    plant(ix)
    return ix


@pytest.fixture(scope="module")
def client(web_index: Path) -> Any:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from vmcorekit.fleet.web import create_app
    return TestClient(create_app(str(web_index)))


def test_pages_and_api(client: Any) -> None:
    top = client.get("/api/top").json()
    sig = top[0]["signature"]
    assert top[0]["count"] == 4 and len(top[0]["spark"]) == 30
    r = client.get("/")
    assert r.status_code == 200 and sig in r.text and "<svg class=\"sparkline\"" in r.text
    s = client.get(f"/api/signature/{sig}").json()
    assert s["count"] == 4 and s["kernels"] == [{"release": "6.1.0-56-amd64", "count": 3},
                                                {"release": "6.1.0-56-arm64", "count": 1}]
    page = client.get(f"/signature/{sig[:10]}").text
    assert "<svg class=\"chart\"" in page and "6.1.0-56-amd64" in page
    for m in s["members"]:
        assert f"/dump/{m['content_id']}" in page
    rep = client.get(f"/dump/{s['members'][0]['content_id']}")
    assert rep.status_code == 200 and "sysrq triggered crash" in rep.text
    found = client.get("/api/search", params={"q": "arm64"}).json()
    assert [f["release"] for f in found] == ["6.1.0-56-arm64"]
    assert "1 dumps" in client.get("/search", params={"q": "arm64"}).text
    assert client.get("/api/stats").json()["dumps"] == 7


def test_headers_and_nothing_else_is_served(client: Any) -> None:
    for url in ("/", "/api/top", "/nope", "/static/app.js", "/../../etc/passwd", "/dump/..%2F..%2Fetc",
                "/signature/%3Cscript%3E", "/api/dump/zz"):
        r = client.get(url)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, url
        assert r.headers["x-content-type-options"] == "nosniff"
        if url not in ("/", "/api/top"):
            assert r.status_code == 404, url
    assert client.post("/api/top").status_code == 405


def test_markup_from_a_dump_is_escaped(client: Any) -> None:
    for url in ("/", f"/signature/{EVIL_SIG}", "/search?q=evil", f"/dump/{EVIL_ID}"):
        text = client.get(url).text
        assert "<script>" not in text.lower(), url
        assert "<img src=x" not in text, url
    assert "&lt;script&gt;" in client.get(f"/signature/{EVIL_SIG}").text
    assert client.get(f"/api/signature/{EVIL_SIG}").json()["title"] == f"BUG: {SCRIPT} in evil_fn"


# -- a real browser ------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def server(web_index: Path) -> Any:
    p = subprocess.Popen([sys.executable, "-m", "vmcorekit", "fleet", "serve", "--index", str(web_index), "--port", "0"],
                         env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()  # "serving http://127.0.0.1:PORT/ ..."
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert m, line + (p.stderr.read() if p.poll() is not None else "")
        yield m.group(1)
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stderr.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not CHROMIUM or not DRIVER:
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(a)
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def _not_pwned(drv: Any) -> None:
    assert drv.title != "pwned"  # what the planted code would have set it to (the text may show it)
    assert drv.execute_script("return typeof window.pwned") == "undefined"


def test_browser_top_signature_search(server: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    drv = browser
    drv.get(server)
    assert drv.title.startswith("Top crashers")
    rows = drv.find_elements(By.CSS_SELECTOR, "#top tbody tr")
    import urllib.request
    with urllib.request.urlopen(server + "api/top") as r:  # the page shows what its API says
        api = json.loads(r.read())
    assert len(rows) == len(api) >= 2 and [r.find_element(By.TAG_NAME, "a").text for r in rows] == \
        [a["signature"] for a in api]
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert first[3].text == "4" and "sysrq triggered crash" in first[1].text
    evil = [r for r in rows if EVIL_SIG in r.text][0]
    assert SCRIPT in evil.find_element(By.CSS_SELECTOR, "td.title").text  # shown as text
    assert rows[0].find_elements(By.CSS_SELECTOR, "svg.sparkline polyline")
    _not_pwned(drv)

    first[0].find_element(By.TAG_NAME, "a").click()
    assert drv.find_element(By.ID, "sig-count").text == "4"
    assert "sysrq triggered crash" in drv.find_element(By.ID, "sig-title").text
    assert drv.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")
    members = drv.find_elements(By.CSS_SELECTOR, "table.members tbody tr")
    assert len(members) == 4
    members[0].find_element(By.TAG_NAME, "a").click()
    assert "sysrq triggered crash" in drv.find_element(By.TAG_NAME, "body").text
    _not_pwned(drv)

    drv.back()  # the report page is the report renderer's own; search lives on the dashboard's pages
    box = drv.find_element(By.CSS_SELECTOR, "input[type=search]")
    box.send_keys("evil", Keys.ENTER)
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    count = WebDriverWait(drv, 20).until(ec.presence_of_element_located((By.ID, "result-count")))
    assert count.text == "1 dumps" and "/search?q=evil" in drv.current_url
    assert "host<img src=x" in drv.find_element(By.CSS_SELECTOR, "table.members").text
    drv.find_element(By.LINK_TEXT, EVIL_SIG).click()
    assert SCRIPT in drv.find_element(By.ID, "sig-title").text
    assert SCRIPT in drv.find_element(By.CSS_SELECTOR, "pre.log").text
    _not_pwned(drv)
    drv.get(server + f"dump/{EVIL_ID}")  # the report renderer's page; its log is folded (textContent)
    assert SCRIPT in drv.find_element(By.TAG_NAME, "body").get_attribute("textContent")
    _not_pwned(drv)


def test_pages_wait_out_a_writer(client: Any, web_index: Path) -> None:
    """An ingest holds the index only while writing a batch: a page asked for meanwhile waits
    for it rather than failing."""
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               "c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(1.5)",
                               str(web_index)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.monotonic()
        r = client.get("/api/top")
        assert r.status_code == 200 and r.json()[0]["count"] == 4
        assert time.monotonic() - t > 0.5  # it did wait
    finally:
        holder.wait(30)
        holder.stdout.close()


def test_loopback_dashboard_refuses_other_host_names(web_index: Path) -> None:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from vmcorekit.fleet.web import LOOPBACK_HOSTS, create_app
    c = TestClient(create_app(str(web_index), LOOPBACK_HOSTS), base_url="http://127.0.0.1")
    assert c.get("/api/top").status_code == 200
    assert c.get("/api/top", headers={"host": "attacker.example"}).status_code == 400
