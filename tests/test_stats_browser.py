"""The stats page in a real headless Chromium: every plot renders, the console stays clean, nothing is fetched.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ending in
NUL on file descriptors 3 and 4), so no client library is needed. Host names resolve to nothing, and every
request the page makes is recorded, so a fetch is seen even though it could not succeed. A control page that
fetches, logs an error and has an empty plot proves the checks can fail. Skipped when Chromium is missing
(``bin/install-browser`` installs Debian's package).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, invoke
from test_stats import pack, tokenized

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (bin/install-browser installs it)")]

CHECK_PLOTS = """
Array.from(document.querySelectorAll('figure')).map(f => {
  const svg = f.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {id: f.id, width: box.width, height: box.height,
          shapes: svg ? svg.querySelectorAll('path, rect, use').length : 0};
})
"""


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends become fds 3 (commands) and 4 (replies)
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        assert CHROMIUM is not None
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=wire, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == self._next, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        return self._wait(lambda m: m.get("method") == method, timeout)

    def _wait(self, match: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if match(message):
                    return message
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buffer += chunk
        raise TimeoutError("no reply from chromium")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def open_page(page: Path, profile: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """Load ``page``; return its plots' sizes, every request other than the page itself, and console errors."""
    browser = DevTools(profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        url = page.resolve().as_uri()
        browser.send("Page.navigate", {"url": url}, session=session)
        browser.wait_event("Page.loadEventFired")
        time.sleep(0.5)  # let late console messages and requests arrive
        plots = browser.send("Runtime.evaluate", {"expression": CHECK_PLOTS, "returnByValue": True},
                             session=session)["result"]["value"]
        if screenshot is not None:
            import base64

            shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                session=session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        events = browser.events
    finally:
        browser.close()
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    errors = [e["params"]["exceptionDetails"].get("text", "") for e in events
              if e["method"] == "Runtime.exceptionThrown"]
    errors += [" ".join(str(a.get("value", "")) for a in e["params"]["args"]) for e in events
               if e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "warning", "assert")]
    errors += [e["params"]["entry"]["text"] for e in events
               if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning")]
    return {"plots": plots, "fetched": [u for u in requests if u != url], "errors": errors}


def test_stats_page_renders_every_plot_offline(tmp_path):
    folder = tokenized(tmp_path)
    pack(folder, tmp_path / "packed", 100)
    page = tmp_path / "stats.html"
    result = invoke("stats", tmp_path / "packed", "--html", page, "-q")
    assert result.exit_code == 0, result.stderr
    seen = open_page(page, tmp_path / "profile", screenshot=tmp_path / "page.png")
    assert seen["fetched"] == [] and seen["errors"] == []
    assert [p["id"] for p in seen["plots"]] == ["plot-lengths_tokens", "plot-buckets", "plot-turns", "plot-rejects",
                                               "plot-sources", "plot-packing"]
    for plot in seen["plots"]:
        assert plot["width"] > 600 and plot["height"] > 100 and plot["shapes"] > 20, plot
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_records_page_in_the_browser(tmp_path):
    page = tmp_path / "records.html"
    result = invoke("stats", FIXTURES / "data" / "canonical.jsonl", "--tokenizer", FIXTURES / "tokenizers" / "tiny-bpe",
                    "--html", page, "-q")
    assert result.exit_code == 0, result.stderr
    seen = open_page(page, tmp_path / "profile")
    assert seen["fetched"] == [] and seen["errors"] == []
    assert {p["id"] for p in seen["plots"]} == {"plot-lengths_chars", "plot-lengths_tokens", "plot-buckets",
                                                "plot-turns"}
    assert all(p["width"] > 600 and p["shapes"] > 20 for p in seen["plots"])


def test_the_checks_catch_a_fetch_an_error_and_an_empty_plot(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.com/x.css">'
                    '</head><body><figure id="plot-empty"><svg></svg></figure>'
                    '<img src="http://example.com/plot.png"><script>console.error("boom")</script></body></html>')
    seen = open_page(page, tmp_path / "profile")
    assert "https://cdn.example.com/x.css" in seen["fetched"] and "http://example.com/plot.png" in seen["fetched"]
    assert any("boom" in e for e in seen["errors"])
    assert [(p["id"], p["shapes"]) for p in seen["plots"]] == [("plot-empty", 0)]
