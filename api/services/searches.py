"""Searches for the API: validate a request against the user's supernet, targets and the algorithm registry, queue it.

The search job (kind `SEARCH_JOB_KIND`) gets the normalised request as its parameters; its
`Search` row is created here with the job's id, so the job finds it by ``Search.job_id``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.context import ServiceContext
from api.errors import invalid, not_found
from api.schemas.searches import FIXED_OBJECTIVES, LATENCY, SearchCreate
from api.services import jobs, targets
from store.models import Job, Search, Supernet, User
from workers.kinds import JOB_KINDS, validate_params

SEARCH_JOB_KIND = "search"


def _objective(name: str, target_names: list[str], field: str) -> str:
    """`name` with the ``latency`` alias resolved, or a 422 naming `field` and what is allowed."""
    if name == LATENCY and len(target_names) == 1:
        return f"{LATENCY}:{target_names[0]}"
    allowed = [*FIXED_OBJECTIVES, *(f"{LATENCY}:{t}" for t in target_names)]
    if name not in allowed:
        raise invalid(field, f"unknown objective {name!r}; allowed with these targets: {allowed}")
    return name


def search_params(ctx: ServiceContext, user: User, request: SearchCreate) -> dict[str, Any]:
    """The search job's parameters: the request checked and normalised.

    Raises:
        ApiError: 404 for a supernet or target the user does not have; 422 naming the field otherwise.
    """
    from nas.search import list_algorithms

    with ctx.db.session() as s:
        supernet = s.get(Supernet, request.supernet_id)
        if supernet is None or supernet.user_id != user.id:
            raise not_found("supernet", request.supernet_id, "supernet_id")
        for name in request.targets:
            targets.get_target(s, user, name, "targets")
        space = supernet.space
    if request.algorithm not in list_algorithms():
        raise invalid("algorithm", f"unknown algorithm {request.algorithm!r}; registered: {list_algorithms()}")
    objectives = [_objective(o, request.targets, "objectives") for o in request.objectives]
    directions = {_objective(o, request.targets, "directions"): d for o, d in request.directions.items()}
    constraints = {_objective(o, request.targets, "constraints"): b for o, b in request.constraints.items()}
    for field, names in (("directions", directions), ("constraints", constraints)):
        extra = sorted(set(names) - set(objectives))
        if extra:
            raise invalid(field, f"{extra} are not among the objectives {objectives}")
    for name, bound in constraints.items():
        if isinstance(bound, tuple):
            low, high = bound
            if (low is None and high is None) or (low is not None and high is not None and low > high):
                raise invalid(f"constraints.{name}", f"[low, high] needs low <= high and one of them set, got {bound}")
    params: dict[str, Any] = {
        "supernet_id": request.supernet_id,
        "space": space,
        "objectives": objectives,
        "directions": {o: directions.get(o, FIXED_OBJECTIVES.get(o, "min")) for o in objectives},
        "constraints": {o: list(b) if isinstance(b, tuple) else b for o, b in constraints.items()},
        "targets": list(request.targets),
        "algorithm": request.algorithm,
        "budget": request.budget,
        "seed": request.seed,
        "predictor_samples": request.predictor_samples,
        "export_limit": request.export_limit,
    }
    if SEARCH_JOB_KIND in JOB_KINDS.names():
        params = validate_params(SEARCH_JOB_KIND, params)
    return params


def create_search(ctx: ServiceContext, user: User, request: SearchCreate, key: str | None) -> tuple[Search, Job, bool]:
    """Queue the search job and create its row; an idempotent retry returns the original ones.

    Raises:
        ApiError: as `search_params`.
        store.queue.IdempotencyConflictError: `key` was used for another request.
    """
    params = search_params(ctx, user, request)
    job, created = jobs.submit(ctx, user, SEARCH_JOB_KIND, params, key)
    try:
        with ctx.db.session() as s:
            search = s.scalars(select(Search).where(Search.job_id == job.id)).one_or_none()
            if search is None:
                search = Search(
                    user_id=user.id, job_id=job.id, supernet_id=params["supernet_id"], objectives=params["objectives"],
                    directions=params["directions"], constraints=params["constraints"], targets=params["targets"],
                    algorithm=params["algorithm"], budget=params["budget"],
                )  # fmt: skip
                s.add(search)
                s.flush()
    except IntegrityError:  # a concurrent retry with the same key created it
        with ctx.db.reader() as s:
            search = s.scalars(select(Search).where(Search.job_id == job.id)).one()
    return search, job, created
