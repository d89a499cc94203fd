"""Serving the exported page on this machine, and opening it in headless Chromium for a screenshot.

`serve_folder` is a static file server on 127.0.0.1 (the page's `.mjs` and `.wasm` need JavaScript and WebAssembly
content types, which it sets whatever the Python version). `open_page` drives Debian's (or any installed)
Chromium through the `playwright` package pointed at its executable, so no browser is downloaded.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.storage import atomic_path

HOST = "127.0.0.1"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_CHROMIUM = "apt-get install -y chromium"
PAGE_TIMEOUT_MS = 120_000  # loading 20 MB of graphs and runtime and dreaming the steps asked for
VIEWPORT = {"width": 800, "height": 560}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with the content types the page needs, not cached (a new export shows at once), no log lines."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
                      ".onnx": "application/octet-stream"}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that leaves mid-download (a reload, a closed tab) is normal: no traceback for it."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve_folder(folder: str | os.PathLike, port: int = 0) -> Iterator[str]:
    """Serves `folder` on http://127.0.0.1:`port`/ (0: a free port) in a thread while the block runs; yields the
    URL. The server stops when the block ends."""
    handler = functools.partial(_Handler, directory=str(folder))
    try:
        server = _Server((HOST, port), handler)
    except OSError as error:
        raise UserError(f"cannot serve on {HOST}:{port} ({error.strerror or error})") from None
    thread = threading.Thread(target=server.serve_forever, name="export_web_server", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def find_chromium(executable: str | None = None) -> str | None:
    """The Chromium to drive: `executable` if given, else the first of `CHROMIUM_NAMES` on PATH (None: none)."""
    if executable:
        return shutil.which(executable) or (executable if Path(executable).is_file() else None)
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def browser_missing(executable: str | None = None) -> str | None:
    """Why the page cannot be opened in headless Chromium here (no Chromium, no playwright package), or None."""
    if find_chromium(executable) is None:
        return f"no Chromium found ({executable or ', '.join(CHROMIUM_NAMES)}): {INSTALL_CHROMIUM}"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing: pip install -e .[web]"
    return None


@contextlib.contextmanager
def open_page(url: str, executable: str | None = None) -> Iterator[tuple[Any, list[str]]]:
    """Opens `url` in headless Chromium; yields (playwright page, the console errors and page errors so far, a
    list that keeps filling). Background networking is off: the page needs nothing but its own server.

    One at a time in a process: playwright's sync API cannot start inside another open page's (it raises
    "Playwright Sync API inside the asyncio loop")."""
    missing = browser_missing(executable)
    if missing:
        raise UserError(missing)
    from playwright.sync_api import sync_playwright

    chromium = find_chromium(executable)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--disable-background-networking", "--disable-component-update",
                                                   "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            yield page, errors
        finally:
            browser.close()


def wait_for_steps(page: Any, steps: int, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    """Waits until the page has dreamt `steps` steps in all; a page error stops the wait at once."""
    page.wait_for_function("n => window.worldModel && (window.worldModel.error !== null"
                           " || window.worldModel.totalSteps >= n)", arg=steps, timeout=timeout_ms)
    error = page.evaluate("window.worldModel.error")
    if error is not None:
        raise UserError(f"the page failed: {error}")


def screenshot(folder: str | os.PathLike, path: str | os.PathLike, steps: int = 100, seed: int = 0,
               executable: str | None = None) -> Path:
    """Serves `folder`, lets the page dream `steps` steps (seeded) in headless Chromium and saves it as a PNG."""
    with serve_folder(folder) as url, open_page(f"{url}?seed={seed}", executable) as (page, errors):
        wait_for_steps(page, steps)
        if errors:
            raise UserError(f"the page logged an error: {errors[0]}")
        with atomic_path(path, suffix=".png") as tmp:
            page.screenshot(path=str(tmp))
    return Path(path)
