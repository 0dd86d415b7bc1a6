"""A real headless Chromium (Debian's package), driven over the DevTools protocol (CDP) with
``websocket-client``: no Playwright, no browser download.

    with Browser(tmp_path / "profile") as browser:
        browser.navigate(url)
        with browser.expect_load():
            browser.click("a.subscription-link")
        browser.wait_for("document.querySelector('ol#drift-features') !== null")
        browser.screenshot(artifacts("dashboard") / "drift.png")
        assert browser.errors == []

Chromium starts with the flags a closed network needs (no background networking, component
updates or sync). Every wait is for a condition, with a deadline of minutes (CI machines have
two loaded cores); nothing sleeps to synchronise. Console errors, uncaught exceptions and failed
loads are collected in :attr:`Browser.errors`, every URL the page requested in
:attr:`Browser.requests`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
import websocket

from tests.service_support import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DEADLINE = 120.0  # seconds: the default for every wait
POLL = 0.05  # seconds a wait_for listens for events between two looks at its condition
REPO = Path(__file__).resolve().parents[1]
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def require_chromium() -> str:
    """Chromium's path; skips the test without it, except on CI (where .ci/run installs it)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium is not installed here")
    return CHROMIUM


def artifacts(*parts: str) -> Path:
    """The directory for test artefacts (screenshots): ``$OPENMART_TEST_ARTIFACTS`` or
    ``<repo>/test-artifacts``, with ``parts`` below it; made if missing."""
    root = Path(os.environ.get("OPENMART_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


class CdpError(RuntimeError):
    """A DevTools command failed (its ``error`` answer), or no answer came in time."""


class JsError(RuntimeError):
    """The evaluated expression threw (or its promise rejected)."""


@dataclass(frozen=True)
class ConsoleError:
    source: str  # console, exception, log (the browser's own: failed loads, CSP)
    text: str
    url: str = ""

    def __str__(self) -> str:
        return f"{self.source}: {self.text}" + (f" ({self.url})" if self.url else "")


class Browser:
    """One headless Chromium with one page, as a context manager."""

    def __init__(self, profile: Path, *, width: int = 1280, height: int = 900, executable: str | None = None) -> None:
        self.profile = profile
        self.width = width
        self.height = height
        self.executable = executable or require_chromium()
        self.events: list[dict[str, Any]] = []
        self.errors: list[ConsoleError] = []
        self.requests: list[str] = []
        self._ids = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._ws: websocket.WebSocket | None = None

    # -- life --------------------------------------------------------------------------------------

    def __enter__(self) -> Browser:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def start(self, deadline: float = DEADLINE) -> None:
        port = free_port()
        self.profile.mkdir(parents=True, exist_ok=True)
        argv = [self.executable, *FLAGS, f"--user-data-dir={self.profile}", f"--remote-debugging-port={port}"]
        self._process = subprocess.Popen(
            [*argv, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        end = time.monotonic() + deadline
        page: dict[str, Any] | None = None
        while page is None:
            if self._process.poll() is not None:
                raise CdpError(f"chromium exited with {self._process.returncode} before it listened")
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                page = next((t for t in targets if t.get("type") == "page"), None)
            except httpx.HTTPError:
                pass
            if page is None:
                if time.monotonic() > end:
                    raise CdpError(f"chromium's DevTools did not list a page within {deadline:g} s")
                time.sleep(0.1)  # polling interval while waiting for the port to answer
        self._ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=deadline, suppress_origin=True)
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            finally:
                self._ws = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    # -- the protocol ------------------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = DEADLINE) -> dict[str, Any]:
        """Send a command and return its result; events arriving meanwhile are recorded."""
        if self._ws is None:
            raise CdpError("the browser is not started")
        self._ids += 1
        msg_id = self._ids
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        end = time.monotonic() + timeout
        while True:
            msg = self._receive(end)
            if msg is None:
                raise CdpError(f"{method}: no answer within {timeout:g} s")
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise CdpError(f"{method}: {msg['error'].get('message')} {msg['error'].get('data', '')}".strip())
                return dict(msg.get("result") or {})

    def _receive(self, until: float) -> dict[str, Any] | None:
        """The next message before ``until`` (monotonic), or None; events are recorded."""
        assert self._ws is not None
        left = until - time.monotonic()
        if left <= 0:
            return None
        self._ws.settimeout(left)
        try:
            raw = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        msg: dict[str, Any] = json.loads(raw)
        if "method" in msg and "id" not in msg:
            self._record(msg)
        return msg

    def pump(self, seconds: float) -> None:
        """Record the events that arrive within ``seconds`` (the wait between two polls)."""
        end = time.monotonic() + seconds
        while self._receive(end) is not None:
            pass

    def _record(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        method, params = event["method"], event.get("params") or {}
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails") or {}
            text = (details.get("exception") or {}).get("description") or details.get("text", "")
            self.errors.append(ConsoleError("exception", text, details.get("url", "")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args") or [])
            self.errors.append(ConsoleError("console", text))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(ConsoleError("log", entry.get("text", ""), entry.get("url", "")))
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])

    def clear(self) -> None:
        """Forget the events, errors and requests seen so far (each test checks its own)."""
        self.events.clear()
        self.errors.clear()
        self.requests.clear()

    # -- the page ----------------------------------------------------------------------------------

    def evaluate(self, expression: str, *, timeout: float = DEADLINE) -> Any:
        """The expression's value (a promise is awaited), returned by value; raises
        :class:`JsError` when it throws."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True, "userGesture": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text", "")
            short = " ".join(expression.split())
            raise JsError(f"{short[:100] + ('...' if len(short) > 100 else '')} threw: {text}")
        return result["result"].get("value")

    def wait_for(self, condition: str, *, timeout: float = DEADLINE, message: str = "") -> Any:
        """Poll the JavaScript ``condition`` until it is truthy and return its value; raises
        TimeoutError (with ``message``) when it is still falsy after ``timeout`` seconds. A page
        being replaced meanwhile (a navigation) is not an error: the next poll looks again."""
        end = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.evaluate(condition, timeout=max(end - time.monotonic(), 1.0))
                if last:
                    return last
            except (JsError, CdpError) as exc:
                last = exc  # e.g. "Execution context was destroyed" while a new page loads
            if time.monotonic() > end:
                raise TimeoutError(f"{message or condition} not true within {timeout:g} s (last: {last!r})")
            self.pump(POLL)

    def _load_events(self) -> int:
        return sum(1 for e in self.events if e["method"] == "Page.loadEventFired")

    @contextmanager
    def expect_load(self, *, timeout: float = DEADLINE) -> Iterator[None]:
        """Wait, after the block, for the page load the block caused (a link followed, a form
        submitted)."""
        before = self._load_events()
        yield
        end = time.monotonic() + timeout
        while self._load_events() == before:
            if self._receive(end) is None and time.monotonic() >= end:
                raise TimeoutError(f"no page loaded within {timeout:g} s")

    def navigate(self, url: str, *, timeout: float = DEADLINE) -> None:
        """Go to ``url`` and wait for its load event."""
        with self.expect_load(timeout=timeout):
            answer = self.send("Page.navigate", {"url": url}, timeout=timeout)
            if answer.get("errorText"):
                raise CdpError(f"navigating to {url}: {answer['errorText']}")

    @property
    def url(self) -> str:
        return str(self.evaluate("window.location.href"))

    def count(self, selector: str) -> int:
        """How many elements match the CSS ``selector``."""
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))

    def attribute(self, selector: str, name: str) -> str | None:
        """The first match's attribute ``name``; None when nothing matches or it has none."""
        value = self.evaluate(
            f"document.querySelector({json.dumps(selector)})?.getAttribute({json.dumps(name)}) ?? null"
        )
        return None if value is None else str(value)

    def text(self, selector: str) -> str | None:
        """The first match's text, stripped; None when nothing matches."""
        value = self.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent.trim() ?? null")
        return None if value is None else str(value)

    def _center(self, selector: str) -> tuple[float, float]:
        box = self.evaluate(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) throw new Error('no element matches ' + {json.dumps(selector)});
                el.scrollIntoView({{block: 'center', inline: 'center'}});
                const r = el.getBoundingClientRect();
                return {{x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height}};
            }})()"""
        )
        if not box["w"] or not box["h"]:
            raise JsError(f"{selector} is not visible (its box is {box['w']} x {box['h']})")
        return float(box["x"]), float(box["y"])

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the centre of the first match, scrolled
        into view; raises :class:`JsError` when nothing matches or it is not visible."""
        x, y = self._center(selector)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params: dict[str, Any] = {"type": kind, "x": x, "y": y}
            if kind != "mouseMoved":
                params |= {"button": "left", "clickCount": 1}
            self.send("Input.dispatchMouseEvent", params)

    def type(self, selector: str, text: str) -> None:
        """Focus the first match (a click) and type ``text`` into it."""
        self.click(selector)
        focused = self.evaluate(f"document.activeElement === document.querySelector({json.dumps(selector)})")
        if not focused:
            raise JsError(f"{selector} did not take the focus")
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (beyond the viewport; at least the viewport's size)."""
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        width, height = max(self.width, size["width"]), max(self.height, size["height"])
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
