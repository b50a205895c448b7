"""Target rows and the measurement specs (`predictors.latency.Target`) they stand for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from predictors.latency import targets as specs
from store.models import Target

SPEC_FIELDS = ("threads", "inter_op_threads", "batch_size", "precision", "provider_options", "remote")
"""The spec fields a row keeps in `Target.settings` (name, device and runtime are columns)."""


def spec_settings(spec: specs.Target) -> dict[str, Any]:
    """The `Target.settings` of a row for `spec`."""
    return {k: v for k, v in spec.to_dict().items() if k in SPEC_FIELDS}


def row_spec(row: Target) -> specs.Target:
    """The measurement spec of a target row."""
    settings = {k: v for k, v in row.settings.items() if k in SPEC_FIELDS}
    return specs.Target.from_dict({"name": row.name, "device": row.device, "runtime": row.runtime, **settings})


def target_row(session: Session, name: str, user_id: int | None) -> Target | None:
    """The row of target `name` that user `user_id` sees: theirs, else a shared one (`None`: shared only).

    Names are per user, so another user's target of the same name is never returned. A built-in
    target gets its shared row (no owner) on first use; one created concurrently by another session
    is read back.
    """
    visible = (
        or_(Target.user_id == user_id, Target.user_id.is_(None)) if user_id is not None else Target.user_id.is_(None)
    )
    query = select(Target).where(Target.name == name, visible).order_by(Target.user_id.is_(None))
    row = session.scalars(query).first()
    if row is None and name in specs.list_targets():
        spec = specs.get_target(name)
        row = Target(name=name, user_id=None, device=spec.device, runtime=spec.runtime,
                     settings=spec_settings(spec), description="built in")  # fmt: skip
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # created by a concurrent session
            row = session.scalars(select(Target).where(Target.name == name, Target.user_id.is_(None))).one()
    return row
