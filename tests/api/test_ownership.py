"""`owned`: a user's row comes back; a missing row and another user's row are the same 404."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.errors import ApiError
from api.services.ownership import owned
from store.models import Supernet, User
from tests.api_helpers import make_context, make_users


def test_owned_returns_the_users_row_and_404s_a_missing_or_foreign_one(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    users = make_users(ctx.db)
    with ctx.db.session() as s:
        row = Supernet(user_id=users.a_id, space="s", dataset="demo", strategy="sandwich", config={})
        s.add(row)
        s.flush()
        alice, bob = s.get(User, users.a_id), s.get(User, users.b_id)
        assert alice is not None and bob is not None
        assert owned(s, Supernet, row.id, alice) is row
        errors = []
        for ident, user in ((row.id, bob), (row.id + 1, alice)):
            with pytest.raises(ApiError) as caught:
                owned(s, Supernet, ident, user, "supernet_id")
            errors.append(caught.value)
    assert [(e.status, e.code, e.message, e.field) for e in errors] == [
        (404, "not_found", f"supernet {row.id} not found", "supernet_id"),
        (404, "not_found", f"supernet {row.id + 1} not found", "supernet_id"),
    ]
    ctx.db.dispose()
