"""Targets for the API: what a user can see (theirs and the built-in ones), registration, imported tables."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.deps import ServiceContext
from api.errors import ApiError, invalid, not_found
from predictors.latency import targets as builtin
from store.artifacts import register_artifact
from store.models import LatencyTable, Target, User
from store.target_rows import spec_settings, target_row


def visible(user: User) -> Any:
    """SQL condition: targets `user` may use (their own and shared ones)."""
    return or_(Target.user_id == user.id, Target.user_id.is_(None))


def get_target(session: Session, user: User, name: str, field: str | None = None) -> Target:
    """The target `name` as `user` sees it; a built-in one gets its (shared) row on first use.

    Raises:
        ApiError: 404 when it is unknown or another user's.
    """
    row = target_row(session, name)
    if row is None or (row.user_id is not None and row.user_id != user.id):
        raise not_found("target", name, field)
    return row


def register(session: Session, user: User, spec: dict[str, Any], description: str) -> Target:
    """Add a target of `user` from a `predictors.latency.Target` dict.

    Raises:
        ApiError: 422 for an invalid spec, 409 for a name that is taken (built-in names included).
    """
    try:
        target = builtin.Target.from_dict(spec)
    except (ValueError, TypeError) as error:
        raise invalid("name" if not spec.get("name") else "target", str(error)) from None
    if target.name in builtin.list_targets():
        raise ApiError(409, "conflict", f"target name {target.name!r} is a built-in target", "name")
    row = Target(name=target.name, user_id=user.id, device=target.device, runtime=target.runtime,
                 settings=spec_settings(target), description=description)  # fmt: skip
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise ApiError(409, "conflict", f"target name {target.name!r} is taken", "name") from None
    return row


def import_ofa_tables(ctx: ServiceContext, user: User, target: Target, space: str, tables: dict[str, str]) -> int:
    """Import OFA-format YAML tables (resolution -> file text) as the target's latency model; returns its id.

    Raises:
        ApiError: 422 naming the space or the table when they do not fit.
    """
    from nas.spaces import get_space
    from predictors.latency import LookupTable

    try:
        space_obj = get_space(space)
    except KeyError as error:
        raise invalid("space", str(error.args[0])) from None
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for resolution, text in tables.items():
            if not resolution.isdigit():
                raise invalid(f"tables.{resolution}", "keys are resolutions in pixels, e.g. '224'")
            path = Path(tmp) / f"{int(resolution)}_lookup_table.yaml"
            path.write_text(text)
            paths.append(path)
        try:
            table = LookupTable.from_ofa_yaml(paths, space_obj)
        except ValueError as error:
            raise invalid("tables", str(error).replace(tmp + "/", "")) from None
    key = f"targets/{target.name}/tables/{space}-{ctx.clock().strftime('%Y%m%dT%H%M%S%f')}.json"
    stored = ctx.store.put(key, json.dumps(table.to_dict()).encode())
    with ctx.db.session() as s:
        artifact = register_artifact(s, stored, kind="latency_table", user_id=user.id)
        quality = {"resolutions": sorted(int(r) for r in tables), "entries": len(table)}
        row = LatencyTable(target_id=target.id, space=space, kind="imported", artifact_id=artifact.id, quality=quality)
        s.add(row)
        s.flush()
        return row.id
