"""The gallery's local web server (standard library ``http.server``, threaded).

Routes:
- ``GET /`` and ``GET /static/<name>``: the page and its script and style, from the package (no CDN);
- ``GET /files/<path>``: a file under ROOT (images, plots). A path with ``..``, an absolute path, or one that
  resolves (after symlinks) outside ROOT gets 404;
- ``GET /api/meta``: counts, filter choices, score names and thresholds, plots;
- ``GET /api/rows?status=&rule=&edit_type=&decision=&sort=&order=desc|asc&offset=&limit=``: one page of rows;
- ``POST /api/decision`` with JSON ``{"id": ..., "decision": "accept"|"reject"|"flag"|null}``: saved at once to
  ``ROOT/decisions.json`` (atomically). Only JSON bodies with a Host header naming this server are taken, so a web
  page elsewhere cannot post decisions through the browser.

Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import math
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cirsynth.report.decisions import DECISIONS, DecisionStore
from cirsynth.report.manifest import ManifestView, PageQuery

STATIC_FILES = {"gallery.js": "text/javascript", "gallery.css": "text/css", "index.html": "text/html"}
MAX_LIMIT = 200


def static_bytes(name: str) -> bytes:
    return resources.files("cirsynth.report").joinpath("static", name).read_bytes()


class Gallery:
    """What the server serves: a dataset's manifest view, its decisions and its plots."""

    def __init__(self, root: str | Path, plots: dict[str, Any] | None = None):
        self.view = ManifestView(root)
        self.root = self.view.root.resolve()
        self.store = DecisionStore(self.root)  # a malformed decisions file raises here: nothing is served or changed
        self.plots = plots or {"plots": [], "notes": []}

    def meta(self) -> dict[str, Any]:
        v = self.view
        curated = v.curated_status(self.store.decisions)
        has_mask = any(self.view.file_url(m) for m in _masks(v))
        return {
            "root": str(self.root),
            "total": len(v),
            "counts": {s: int((curated == s).sum()) for s in ("accepted", "rejected", "failed")},
            "decisions": len(self.store.decisions),
            "statuses": ["accepted", "rejected", "failed"],
            "rules": v.all_rules(),
            "edit_types": v.edit_types(),
            "score_names": v.score_names,
            "thresholds": {k: t for k, t in v.thresholds().items() if k in v.score_names},
            "decision_kinds": list(DECISIONS),
            "mask_note": None if has_mask else "this dataset stores no LocalBlend masks (the synthesizer keeps only "
                                               "the scores they gave): the mask toggle is off",
            "plots": ["/files/" + p for p in self.plots.get("plots", [])],
            "plot_notes": self.plots.get("notes", []),
        }

    def rows(self, qs: dict[str, list[str]]) -> dict[str, Any]:
        def one(k: str) -> str | None:
            v = qs.get(k, [""])[-1]
            return v or None

        try:
            offset, limit = int(one("offset") or 0), int(one("limit") or 20)
        except ValueError as e:
            raise ValueError("offset and limit must be integers") from e
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"offset must be >= 0 and limit in 1..{MAX_LIMIT}")
        order = one("order") or "desc"
        if order not in ("asc", "desc"):
            raise ValueError("order must be asc or desc")
        sort = one("sort")
        if sort is not None and sort not in self.view.score_names:
            raise ValueError(f"unknown score {sort!r}; scores: {self.view.score_names}")
        q = PageQuery(status=one("status"), rule=one("rule"), edit_type=one("edit_type"), decision=one("decision"),
                      sort=sort, descending=order == "desc", offset=offset, limit=limit)
        return self.view.page(q, self.store.decisions)

    def decide(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) != {"id", "decision"}:
            raise ValueError('body must be {"id": ..., "decision": "accept"|"reject"|"flag"|null}')
        tid, decision = body["id"], body["decision"]
        if not isinstance(tid, str) or tid not in self.view.index_of:
            raise ValueError(f"no triplet with id {tid!r}")
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"decision must be one of {list(DECISIONS)} or null")
        i = self.view.index_of[tid]
        if decision == "accept" and not self.view.file_url(self.view.table.column("target")[i].as_py()):
            raise ValueError(f"{tid} has no target image: it cannot be accepted")
        return self.store.set(tid, decision)

    def file(self, rel: str) -> Path | None:
        """The file under ROOT that ``rel`` names, or None (outside ROOT, absolute, ``..``, missing)."""
        p = PurePosixPath(rel)
        if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or "\x00" in rel:
            return None
        path = (self.root / p).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path


def _masks(view: ManifestView):
    for s in view.table.column("provenance").to_pylist():
        if s and '"mask"' in s:
            try:
                m = json.loads(s).get("mask")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(m, str):
                yield m


class Handler(BaseHTTPRequestHandler):
    gallery: Gallery  # set on the subclass made by make_server
    allowed_hosts: set[str]
    server_version = "cirsynth-gallery"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the URL only
        pass

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self'; object-src 'none'")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(_finite(obj), allow_nan=False).encode(), "application/json; charset=utf-8")

    def _not_found(self) -> None:
        self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            return self._send(200, static_bytes("index.html"), "text/html; charset=utf-8")
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name in STATIC_FILES:
                return self._send(200, static_bytes(name), STATIC_FILES[name] + "; charset=utf-8")
            return self._not_found()
        if path.startswith("/files/"):
            f = self.gallery.file(unquote(path[len("/files/"):]))
            if f is None:
                return self._not_found()
            ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype in ("application/json", "application/javascript"):
                ctype = "text/plain; charset=utf-8"  # never let a file under ROOT run as a page or script
            return self._send(200, f.read_bytes(), ctype)
        try:
            if path == "/api/meta":
                return self._json(200, self.gallery.meta())
            if path == "/api/rows":
                return self._json(200, self.gallery.rows(parse_qs(url.query)))
        except ValueError as e:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        return self._not_found()

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/api/decision":
            return self._not_found()
        if self.headers.get("Host") not in self.allowed_hosts:
            return self._json(HTTPStatus.FORBIDDEN, {"error": "Host header does not name this server"})
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if not 0 < n <= 10_000:
                raise ValueError("body must be 1..10000 bytes")
            body = json.loads(self.rfile.read(n))
            return self._json(200, self.gallery.decide(body))
        except (ValueError, json.JSONDecodeError) as e:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})


def _finite(o: Any) -> Any:
    """``o`` with NaN and infinite floats as null (JSON has no such numbers)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def make_server(gallery: Gallery, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server for ``gallery`` (not started). ``port=0`` picks a free port (read it from ``server.server_address``)."""
    server = ThreadingHTTPServer((host, port), Handler)
    bound = server.server_address[1]
    names = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost") else {host}
    handler = type("GalleryHandler", (Handler,), {"gallery": gallery, "allowed_hosts": {f"{h}:{bound}" for h in names}})
    server.RequestHandlerClass = handler
    server.daemon_threads = True
    return server


def serve_in_thread(gallery: Gallery, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start a server in a daemon thread (tests, notebooks); returns it and its base URL. Stop with ``shutdown()``."""
    server = make_server(gallery, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"
