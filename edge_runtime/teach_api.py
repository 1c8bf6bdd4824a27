"""The Teach panel's JSON API on the live view: what a request must be before anything is done.

``POST /api/teach/ACTION`` with a JSON object body; ACTION is ``capture`` (``class``, ``count``,
``seconds``, ``camera``), ``examples``, ``delete`` (``class``, ``file``), ``teach`` or ``status``.
Every action answers JSON: the panel's status or the examples, or ``{"error": "..."}`` in words.

Guards, in order (nothing is read, written or started before all pass):

- the panel is on (``--teach-dir``), else 404;
- the token in ``Authorization: Bearer``, never in the URL (401): a link or another site's page
  cannot carry it;
- ``Content-Type: application/json`` (415): a cross-site HTML form can only send form encodings, and
  a script on another site cannot send this type without a CORS preflight, which this server never
  answers with permission;
- an ``Origin`` header, where the browser sends one, naming this server (403);
- a body of at most :data:`MAX_BODY` bytes (413), a JSON object (400);
- a capture or teach already running: 409.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import EdgeError

MAX_BODY = 4096
ACTIONS = ("capture", "examples", "delete", "teach", "status")


def handle(view: Any, path: str, headers: Any, body: Any) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON answer) for one POST (``headers``: the request's, ``body``: its stream)."""
    from .teach_panel import Busy

    panel = view.teach
    action = path.removeprefix("/api/teach/")
    if panel is None or not path.startswith("/api/teach/") or action not in ACTIONS:
        return 404, {"error": "not found: POST /api/teach/" + "|".join(ACTIONS) + " (start with --teach-dir DIR)"}
    scheme, _, credentials = (headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not view.authorized("", f"Bearer {credentials.strip()}") or not credentials:
        return 401, {"error": "the token is needed in an Authorization: Bearer header"}
    kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        return 415, {"error": "send the request as Content-Type: application/json"}
    origin = headers.get("Origin")
    if origin is not None and origin.rstrip("/") not in _own_origins(headers.get("Host") or ""):
        return 403, {"error": "requests from another site's page are refused"}
    length = headers.get("Content-Length")
    if length is None or not length.isdigit():
        return 411, {"error": "a Content-Length is needed"}
    if int(length) > MAX_BODY:
        return 413, {"error": f"the request is over {MAX_BODY} bytes"}
    try:
        request = json.loads(body.read(int(length)) or b"{}")
    except (ValueError, UnicodeDecodeError):
        return 400, {"error": "the body is not JSON"}
    if not isinstance(request, dict):
        return 400, {"error": "the body must be a JSON object"}
    try:
        if action == "capture":
            return 200, panel.capture(
                request.get("class"), request.get("count", 10), request.get("seconds", 3.0), request.get("camera"),
                view.cameras,
            )  # fmt: skip
        if action == "examples":
            return 200, panel.examples()
        if action == "delete":
            return 200, panel.delete(request.get("class"), request.get("file"))
        if action == "teach":
            return 200, panel.teach()
        return 200, panel.status()
    except Busy as exc:
        return 409, {"error": str(exc)}
    except EdgeError as exc:
        return 400, {"error": str(exc)}
    except OSError as exc:
        return 507, {"error": f"the disk refused ({exc.strerror or exc}); free some space and try again"}


def _own_origins(host: str) -> set[str]:
    return {f"http://{host}", f"https://{host}"} if host else set()
