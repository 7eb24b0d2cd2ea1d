"""`guppy export --web` and `guppy serve`: the folder carries everything the page loads, the server
serves it with the types browsers need, bad input is one line, and in a real headless Chromium
with the network off the page tokenizes as guppy does, answers as `guppy chat --temperature 0`
does (two turns, so history trimming is the same), draws the attention map and the top-5 table,
and its int8 model gives onnxruntime's int8 reply.

The browser part needs Debian's chromium + chromium-driver and Selenium (`.ci/run` installs them);
without them it is skipped, with the reason."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from guppy.export.onnx import INT8, onnx_greedy, session
from guppy.export.serve import make_server
from guppy.export.web import LOADED, WEB, export_web
from guppy.model.chat import stream_reply, trim_history
from guppy.model.checkpoint import load_model
from tests import browser
from tests.conftest import one_line_error

pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install 'guppy-persona[onnx]'")
runner = CliRunner()
QUESTION = "what is the meaning of life"


@pytest.fixture(scope="module")
def web(mini_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("web") / "web"
    export_web(persona="mini", run=mini_run, out=out)
    return out


def test_folder_has_every_file_the_page_loads_and_nothing_remote(web):
    for f in LOADED + ["model.onnx", "model.int8.onnx"]:
        assert (web / f).is_file(), f
    meta = json.loads((web / "guppy.json").read_text())
    assert meta["persona"] == {"name": "mini", "description": "a tiny test fish.", "user": "the tester"}
    for page in ("index.html", "app.js", "style.css"):
        assert not re.search(r"https?://", (web / page).read_text()), page  # no CDN, no fonts, no analytics
    pins = json.loads((WEB / "vendor" / "package.json").read_text())["dependencies"]
    assert f"ONNX Runtime Web v{pins['onnxruntime-web']}" in (web / "vendor" / "ort.wasm.bundle.min.mjs").read_text()[:200]


def test_export_into_an_existing_folder_needs_overwrite(mini_run, web):
    result = runner.invoke(app, ["export", "mini", "--run", str(mini_run), "--web", "--out", str(web)])
    one_line_error(result, str(web), "--overwrite")
    assert (web / "guppy.json").exists()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_users_folder_holding_an_index_html_is_never_replaced(mini_run, tmp_path, overwrite):
    """A folder holding only an index.html is somebody's page, not a web export (issue 23)."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("mine")
    result = runner.invoke(app, ["export", "mini", "--run", str(mini_run), "--web", "--out", str(tmp_path / "site"),
                                 *overwrite])
    one_line_error(result, str(tmp_path / "site"), "not a folder Guppy made")
    assert (tmp_path / "site" / "index.html").read_text() == "mine"


def test_serve_on_a_port_in_use_is_one_line(web):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "mini", "--folder", str(web), "--port", str(port)])
    one_line_error(result, f"--port {port}", "already in use")


def test_serve_without_an_export_is_one_line(tmp_path):
    one_line_error(runner.invoke(app, ["serve", "mini", "--run", str(tmp_path)]), "guppy export mini --web")


def test_server_sends_wasm_as_webassembly(web):
    with browser.served(web) as url:
        with urllib.request.urlopen(url + "vendor/ort-wasm-simd-threaded.wasm") as r:
            assert r.headers["Content-Type"] == "application/wasm" and r.read(4) == b"\0asm"
        with urllib.request.urlopen(url) as r:
            assert b"app.js" in r.read()
    server = make_server(web, port=0)  # port 0: a free one
    assert server.server_address[1] > 0
    server.server_close()


def test_guppy_serve_prints_a_url_that_serves_the_page(web):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "cli.py", "serve", "mini", "--folder", str(web), "--port", "0"], cwd=root,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "guppy.json") as r:
            assert json.load(r)["persona"]["name"] == "mini"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---------------------------------------------------------------------------------- in Chromium

found = browser.find_browser()
needs_chromium = pytest.mark.skipif(isinstance(found, str), reason=found if isinstance(found, str) else "")


def python_chat(model, tokenizer, questions: list[str]) -> list[str]:
    """guppy chat's REPL at temperature 0, as chat.chat runs it: trim, then stream each reply."""
    context = model.config.context
    max_new_tokens = min(64, context // 2)
    history, replies = [], []
    for q in questions:
        history = trim_history(history + [{"role": "user", "content": q}], tokenizer, context - max_new_tokens)
        reply = stream_reply(model, tokenizer, history, max_new_tokens=max_new_tokens, temperature=0.0, top_k=None,
                             top_p=None, generator=None)
        history.append({"role": "assistant", "content": reply})
        replies.append(reply)
    return replies


@pytest.fixture(scope="module")
def page():
    """One headless Chromium for the module's two pages (each on its own server, so its own origin)."""
    with browser.chromium(height=1400) as page:
        yield page


@needs_chromium
def test_playground_in_headless_chromium(web, mini_run, tmp_path, page):
    model, tokenizer, _ = load_model(mini_run)
    questions = [QUESTION, "are you hungry now"]
    want = python_chat(model, tokenizer, questions)
    chats = [[{"role": "user", "content": QUESTION}],
             [{"role": "user", "content": " héllo  fish, 42 flakes?"}, {"role": "assistant", "content": "yes. food!"},
              {"role": "user", "content": "ünïcode 🐟 and\nnewlines"}]]
    with browser.served(web) as url:
        page.get(url)
        assert browser.wait_state(page) == "ready", page.find_element("id", "status").text
        assert page.find_element("id", "persona-name").text == "mini"
        assert page.find_element("id", "persona-description").text == "a tiny test fish."
        for chat in chats:
            assert page.execute_script("return window.guppy.encodePrompt(arguments[0])", chat) == tokenizer.encode_prompt(chat)

        got = [browser.ask(page, q, temperature=0) for q in questions]
        assert got == want
        assert browser.canvas_colors(page) > 50  # an attention map, not a blank canvas
        wrote = [r.find_elements("css selector", "td")[1].text for r in page.find_elements("css selector", "#top5 tbody tr")]
        assert wrote[-1] == "<|im_end|>"  # a row per reply token, the last one ending the turn
        assert "".join(wrote[:-1]).replace("␣", " ").replace("↵", "\n").strip() == want[-1]
        page.find_element("css selector", "#layer option[value='1']").click()  # another layer's map
        assert browser.canvas_colors(page) > 50
        page.save_screenshot(str(tmp_path / "playground.png"))
        assert (tmp_path / "playground.png").stat().st_size > 20_000
        loaded = browser.resources(page)
        assert loaded and all(r["url"].startswith(url) for r in loaded), loaded  # nothing from the network

        page.get(url + "?model=int8")
        assert browser.wait_state(page) == "ready"
        int8 = browser.ask(page, QUESTION, temperature=0)
    ids = tokenizer.encode_prompt([{"role": "user", "content": QUESTION}])
    reply = onnx_greedy(session(web / INT8), model.config, ids, stop_id=tokenizer.im_end_id,
                        max_new_tokens=min(64, model.config.context // 2))
    assert int8 == tokenizer.decode([i for i in reply if i != tokenizer.im_end_id]).strip()


@needs_chromium
def test_playground_speaks_japanese_as_guppy_chat_does(tmp_path, medaka_world, page):
    """A Japanese persona's page: the same prompt ids as Python, and the same greedy reply, typed in Japanese."""
    from tests.test_japanese import CUE

    run = medaka_world / "runs" / "medaka"
    export_web(persona="medaka", run=run, out=tmp_path / "web")
    model, tokenizer, _ = load_model(run)
    questions = [CUE, "おやすみ、メダカ"]
    want = python_chat(model, tokenizer, questions)
    assert any("\u3040" <= ch <= "\u9fff" for ch in "".join(want)), want  # the model answers in Japanese
    chat = [{"role": "user", "content": "ＡＢＣ　ｶﾀｶﾅ、ごはん？"}]  # full-width Latin, half-width kana, ideographic space
    with browser.served(tmp_path / "web") as url:
        page.get(url)
        assert browser.wait_state(page) == "ready", page.find_element("id", "status").text
        assert page.execute_script("return window.guppy.encodePrompt(arguments[0])", chat) == tokenizer.encode_prompt(chat)
        assert [browser.ask(page, q, temperature=0) for q in questions] == want
