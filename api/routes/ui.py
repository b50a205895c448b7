"""The web view: a single-page app under ``/ui`` that reads everything through the ``/v1`` API.

The page, its script and the vendored plotting library ship in the package (``api/ui/``); no
build step and no CDN. The app keeps the user's API token in ``sessionStorage`` and sends it as
``Authorization`` on every request, so the same authentication and isolation rules apply as for
any other client. None of these routes is in the OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from api.errors import not_found

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
"""The app's files: index.html, app.js, style.css and vendor/ (the plotting library and its licence)."""

MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8"}  # fmt: skip

# The token lives in sessionStorage, so no script from elsewhere may run on these pages;
# plotly sets inline styles on the elements it draws.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

FILES = {p.relative_to(UI_DIR).as_posix(): p for p in UI_DIR.rglob("*") if p.is_file() and p.suffix in MEDIA}
"""Every file the view serves, by its path under /ui/ (a fixed set: no path from a request reaches the disk)."""

router = APIRouter(include_in_schema=False)


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=MEDIA[path.suffix], headers=SECURITY_HEADERS)


@router.get("/")
def root() -> RedirectResponse:
    """The service's root opens the web view."""
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
def ui_root() -> RedirectResponse:
    """``/ui`` is ``/ui/``, so that the page's relative links resolve under it."""
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/{name:path}")
def ui_file(name: str) -> FileResponse:
    """The app's page (for ``/ui/``) or one of its static files; 404 for anything else."""
    path = FILES.get(name or "index.html")
    if path is None:
        raise not_found("file of the web view", name)
    return _file(path)
