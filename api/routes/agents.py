"""``/v1/agents``: remote device agents register, claim measurement tasks, fetch models, post results."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from api.deps import Context, CurrentUser, Page
from api.errors import ERROR_RESPONSES
from api.routes.params import ResourceId
from api.routes.responses import SHA_HEADER, stream_artifact
from api.schemas.agents import AgentOut, AgentRegister, ClaimRequest, TaskResult
from api.schemas.base import Page as PageOut
from api.schemas.targets import TaskOut
from api.services import agents
from store.models import Agent

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=ERROR_RESPONSES)


def _out(agent: Agent) -> AgentOut:
    return AgentOut.model_validate(agent, from_attributes=True)


@router.post("", status_code=201)
def register(body: AgentRegister, ctx: Context, user: CurrentUser) -> AgentOut:
    """Register (or refresh) an agent for targets you can use; your targets record its environment."""
    return _out(agents.register_agent(ctx, user, body.name, body.targets, body.environment))


@router.get("")
def list_agents(ctx: Context, user: CurrentUser, page: Page) -> PageOut[AgentOut]:
    """Your agents, newest first."""
    rows, token = agents.list_agents(ctx, user, page.page_size, page.page_token)
    return PageOut[AgentOut](items=[_out(r) for r in rows], next_page_token=token)


@router.post(
    "/{agent_id}/claim",
    response_model=TaskOut,
    responses={204: {"description": "no task waiting"}},
)
def claim(agent_id: ResourceId, body: ClaimRequest, ctx: Context, user: CurrentUser) -> Response | TaskOut:
    """Lease the next measurement task of a target to this agent (204 when there is none)."""
    task = agents.claim(ctx, user, agent_id, body.target, body.lease_s or ctx.agent_lease_s)
    return Response(status_code=204) if task is None else task


@router.get(
    "/{agent_id}/tasks/{task_id}/model",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def task_model(agent_id: ResourceId, task_id: ResourceId, ctx: Context, user: CurrentUser) -> StreamingResponse:
    """The ONNX model of a task this agent holds (sha256 in a header)."""
    artifact = agents.task_model(ctx, user, agent_id, task_id)
    headers = {SHA_HEADER: artifact.sha256, "Content-Length": str(artifact.size)}
    body = stream_artifact(ctx.store, artifact)
    return StreamingResponse(body, media_type="application/octet-stream", headers=headers)


@router.post("/{agent_id}/tasks/{task_id}/result")
def post_result(
    agent_id: ResourceId, task_id: ResourceId, body: TaskResult, ctx: Context, user: CurrentUser
) -> TaskOut:
    """The outcome of a task this agent holds (409 if it does not; 422 for non-finite or non-positive latency)."""
    measurement = agents.check_measurement(body.measurement) if body.measurement is not None else None
    return agents.finish(ctx, user, agent_id, task_id, measurement, body.error)
