"""The web view's routes (no browser): what they serve, with which headers, and nothing outside ``api/ui/``."""

from __future__ import annotations

from typing import Any

import pytest


def test_the_root_redirects_to_the_view_which_serves_its_files(client: Any) -> None:
    for path in ("/", "/ui"):
        answer = client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (307, "/ui/")
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="app.js"' in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    for path, media in (("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css"),
                        ("/ui/vendor/plotly-basic.min.js", "text/javascript"),
                        ("/ui/vendor/plotly-LICENSE.txt", "text/plain")):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(media), path
    assert "MIT License" in client.get("/ui/vendor/plotly-LICENSE.txt").text
    assert not any(p.startswith("/ui") or p == "/" for p in client.get("/openapi.json").json()["paths"])


@pytest.mark.parametrize(
    "path", ["/ui/nope.js", "/ui/../app.py", "/ui/%2e%2e/routes/ui.py", "/ui/..%2froutes%2fui.py", "/ui/vendor/"]
)
def test_nothing_else_is_served(client: Any, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
