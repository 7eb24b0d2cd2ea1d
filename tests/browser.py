"""Headless Chromium for the playground's tests and benchmark: Debian's chromium + chromium-driver
driven by Selenium, the exported folder served by guppy's own server, and no network: every host
but 127.0.0.1 resolves to nothing and goes through a proxy that is not there."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
DRIVER = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]


def find_browser() -> tuple[str, str] | str:
    """(chromium, chromedriver), or why they cannot be used."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'guppy-persona[browser]')"
    browser = next((p for p in CHROMIUM if Path(p).exists()), None) or shutil.which("chromium")
    driver = next((p for p in DRIVER if Path(p).exists()), None) or shutil.which("chromedriver")
    if browser is None or driver is None:
        return "no Chromium found (apt-get install chromium chromium-driver)"
    return browser, driver


@contextmanager
def served(folder: Path):
    """guppy serve's server for `folder` on a free port, in a thread; yields its URL."""
    from guppy.export.serve import make_server

    server = make_server(folder, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def chromium(width: int = 1280, height: int = 1000):
    """A headless Chromium (Selenium WebDriver) with a fresh profile and no network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if isinstance(found, str):
        raise RuntimeError(found)
    browser, driver = found
    profile = tempfile.mkdtemp(prefix="guppy-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 # network off: nothing resolves but the local server, and nothing has a way out
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"]:
        options.add_argument(flag)
    web = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield web
    finally:
        web.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_state(web, states: tuple[str, ...] = ("ready",), timeout: float = 120) -> str:
    """Wait until the page's status says one of `states` (or error); return it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = web.execute_script("return document.getElementById('status')?.dataset.state")
        if state in states or state == "error":
            return state
        time.sleep(0.05)
    raise TimeoutError(f"the page stayed '{state}' for {timeout} s")


def ask(web, text: str, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
        timeout: float = 120) -> str:
    """Type a message into the page as a person would, send it, wait for the reply; return it."""
    from selenium.webdriver.common.by import By

    for field, value in (("temperature", temperature), ("top-k", top_k), ("top-p", top_p)):
        box = web.find_element(By.ID, field)
        box.clear()
        box.send_keys(str(value))
    prompt = web.find_element(By.ID, "prompt")
    prompt.send_keys(text)
    web.find_element(By.ID, "send").click()
    state = wait_state(web, ("ready",), timeout)
    if state == "error":
        raise RuntimeError(web.find_element(By.ID, "status").text)
    return web.find_elements(By.CSS_SELECTOR, "#messages .message.assistant .reply")[-1].text


def canvas_colors(web) -> int:
    """How many different colours the attention canvas holds (1: blank)."""
    return web.execute_script("""
        const c = document.getElementById('attention'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        return seen.size;""")


def resources(web) -> list[dict]:
    """Every file the page loaded: its URL and size on the wire."""
    return web.execute_script("""
        return [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]
            .map(e => ({url: e.name, bytes: e.encodedBodySize}));""")
