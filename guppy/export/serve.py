"""`guppy serve`: serve an exported web folder on this machine (Python's own http.server).

The page is static, so any file server would do; this one only adds the MIME types browsers
insist on (WebAssembly is compiled while it downloads only when served as application/wasm).
"""

from __future__ import annotations

import errno
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from guppy.checks import check_number
from guppy.errors import GuppyError
from guppy.spec.personas import persona_name, persona_run


class Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".mjs": "text/javascript", ".js": "text/javascript", ".json": "application/json",
                      ".onnx": "application/octet-stream"}

    def log_message(self, format, *args):  # one quiet line per request would drown the URL
        pass


def web_folder(persona: str, run: Path | None = None, folder: Path | None = None) -> Path:
    name = persona_name(persona)  # checked even when --folder makes it moot
    folder = Path(folder) if folder is not None else persona_run(name, run).web
    if not (folder / "index.html").is_file() or not (folder / "guppy.json").is_file():
        raise GuppyError(f"{folder}: no exported web page here; run `guppy export {persona} --web` first")
    return folder


def make_server(folder: Path, port: int = 8000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server for `folder` on host:port (port 0: any free one), not yet serving."""
    try:
        return ThreadingHTTPServer((host, port), functools.partial(Handler, directory=str(folder)))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise GuppyError(f"--port {port}: already in use on {host}; stop what runs there or pick "
                             f"another port (--port {port + 1})") from None
        if e.errno == errno.EACCES:
            raise GuppyError(f"--port {port}: not allowed for this user; pick one above 1023") from None
        raise


def serve(*, persona: str, run: Path | None = None, folder: Path | None = None, port: int = 8000,
          on_ready=print) -> None:
    """Serve the page until Ctrl-C."""
    check_number("--port", port, ge=0, le=65535)
    folder = web_folder(persona, run, folder)
    server = make_server(folder, port)
    host, port = server.server_address[:2]
    on_ready(f"serving {folder} at http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
