"""The local HTTP API, the dashboard and the Prometheus metrics of one gateway.

JSON under /api, described by OpenAPI at /api/openapi.json (served without a token: it
describes the API, the same for every gateway of a version, and holds no site data); every
other /api route wants a bearer token from the site's tokens file (the gateway keeps only
their SHA-256). Reads need the
viewer role, ticket moves and device commands the engineer role; both go through the same
`Operations` as remote commands over MQTT, so the allow-list and audit log are shared. Moves
and commands are audited; reads over HTTP are not (the dashboard reads every few seconds).
/ serves the dashboard (a static page that asks for a token and reads the API); /metrics the
Prometheus text format, with a token unless the site sets `metrics_public`.

Bound to loopback unless the site file says otherwise. The server is uvicorn, run inside the
gateway's event loop on a socket the gateway binds itself, so a taken port is a clear error
at start and signals stay the gateway's.

Whatever anyone sends costs bounded memory and time and leaves polling alone. Every request
first passes a guard (`Guard`, outermost, before any route runs or any body is read): a
token bucket per client address (429, and the connection reads nothing more until its
Retry-After), a Host check against DNS rebinding (421), the bearer token for every route but
the dashboard's files and the OpenAPI document (401, before a byte of the body is read), and
a cap on the body (413) and on the time it may take (408). Every answer carries the security
headers (`SECURITY_HEADERS`). `HttpServer` accepts at most `http.max_connections` at once
(the rest wait in the listen backlog) and closes a connection that takes too long to send a
request's head. Refusals are logged at most once a minute each, with a count.
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations
# at run time.
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp

from alarmgw import __version__
from alarmgw.asgi_guard import invalid_request
from alarmgw.clock import Clock, SystemClock
from alarmgw.diagnostics.tickets import MOVES

from .config import HttpConfig
from .credentials import ApiTokens, Role
from .http_guard import UNAUTHORIZED, Guard, Tally
from .metrics import CONTENT_TYPE, GatewayMetrics
from .operations import Operations
from .refusals import Refused
from .store import MAX_ID

log = logging.getLogger(__name__)

STATUS = {"forbidden": 403, "not_found": 404, "conflict": 409, "invalid": 400, "unavailable": 503, "failed": 500}
DASHBOARD = Path(str(resources.files("alarmgw.gateway").joinpath("dashboard")))


# --- what the API returns (documented in the OpenAPI schema) -----------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Whoami(_Out):
    name: str
    role: Role


class Latest(_Out):
    at: str = Field(description="UTC, ISO 8601")
    values: dict[str, float | int | bool]


class DeviceOut(_Out):
    id: str
    kind: str
    host: str
    parent: str | None = Field(description="the repeater or host it reaches its host through")
    location: str
    model: str
    faults: list[str] = Field(description="faults raised now")
    latest: Latest | None
    commissioned_on: str | None = Field(description="the day it was commissioned (YYYY-MM-DD)")
    warranty_until: str | None = Field(description="its last day in warranty: 12 months, or the maker's longer one")
    in_warranty: bool | None = Field(description="today; after the warranty parts are charged at cost")
    end_of_life: str | None = Field(description="the day its rated life is reached (6 years unless set)")


class DeviceDetail(DeviceOut):
    history: list[Latest] = Field(description="sampled readings, newest first")


class FaultOut(_Out):
    device: str
    fault: str
    title: str
    kind: str | None
    location: str
    since: str | None = Field(description="first observation (UTC) of the fault on its ticket")
    ticket: int | None = Field(description="the ticket carrying it: its own, or the root cause's")
    behind: str | None = Field(description="the device whose ticket lists this one as lost behind it")


class ClockOut(_Out):
    due: str
    state: str = Field(description="running | met | breached | not_needed")
    remaining_s: float
    stopped_at: str | None
    provisional: bool


class TicketOut(_Out):
    id: int
    site: str
    device: str
    device_kind: str
    fault: str
    title: str
    state: str
    opened_at: str = Field(description="the moment of detection (UTC); every clock runs from it")
    clocks: dict[str, ClockOut] = Field(description="response, arrival, repair; and downtime once the device went away")
    fault_active: bool
    affected: list[str]
    casualties: list[str]
    cause: str
    diagnosis: dict[str, Any]
    down_since: str | None = Field(None, description="its device's last reading before it went away during the repair")
    back_at: str | None = Field(None, description="its device's first reading after it was back")
    out_of_service: bool = Field(False, description="an engineer took its device out of service")
    version: int
    actions: list[str] = Field(description="moves this ticket may make now")


class SiteOut(_Out):
    site: str
    name: str
    at: str = Field(description="the gateway's clock (UTC)")
    devices: int
    active_faults: int
    open_tickets: int
    stats: dict[str, int]


class Problem(BaseModel):
    detail: str = Field(description="what was wrong, in words")


# What the guard may answer to any request, before it reaches a route.
GUARDED = {
    408: "the request's body did not arrive in time",
    413: "the body is larger than the site's `http.max_body_bytes`",
    421: "the Host header names neither this gateway's address nor one of the site's `http.host_names`",
    429: "too many requests from this address (the site's `http.requests_per_s`): try again after Retry-After",
    431: "the request line and headers are over 16 KiB",
}


def _errors(*codes: int, token: bool = True) -> dict[int | str, dict[str, Any]]:
    what = {
        400: "cannot be done as asked: a body that is not JSON, a device that has no self-test",
        401: "no token, or one this gateway does not know",
        403: "the token's role may not do this",
        404: "no such device or ticket",
        409: "the ticket's state does not allow this move",
        503: "the gateway's store is busy for a moment: try again",
        **GUARDED,
    }
    listed = sorted({*codes, *GUARDED, *((401, 503) if token else ())})
    out: dict[int | str, dict[str, Any]] = {c: {"model": Problem, "description": what[c]} for c in listed}
    out[429]["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


READ, ONE, MOVE, COMMAND = _errors(), _errors(404), _errors(400, 403, 404, 409), _errors(400, 403, 404)
PUBLIC = _errors(token=False)
TicketId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="ticket number")]


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=500, description="what was done or said")


class UserActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=1000, description="what the customer did about the failure")


class VisitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: float | None = Field(
        None,
        gt=0,
        le=24,
        description="the visit ends by itself after this long (default: the site's maintenance.max_hours)",
    )


# --- the routes: module level, the gateway's parts reached through the app's state -------


@dataclass(frozen=True)
class ApiState:
    """What the routes and the guard need of one gateway, kept on `app.state.alarmgw`."""

    ops: Operations
    tokens: ApiTokens
    metrics: GatewayMetrics
    metrics_public: bool
    settings: HttpConfig  # the site's `http` section: limits, host names
    clock: Clock  # times the guard: rates, log lines
    unknown_token: "Tally"


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.alarmgw
    return state


bearer = HTTPBearer(auto_error=False, description="a token from the site's API tokens file")


def holder(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)], request: Request) -> Whoami:
    """The token's holder, or 401."""
    state = _state(request)
    found = state.tokens.holder(creds.credentials) if creds is not None else None
    if found is None:
        where = request.client.host if request.client else "?"
        state.unknown_token.note(f"{request.method} {request.url.path} from {where}")
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    return Whoami(name=found[0], role=found[1])


Caller = Annotated[Whoami, Depends(holder)]


async def run(request: Request, who: Whoami, command: str, **args: Any) -> Any:
    """Run one command through the shared operations; a refusal becomes its HTTP status."""
    try:
        return await _state(request).ops.perform(who.name, who.role, command, args, "http")
    except Refused as exc:
        raise HTTPException(STATUS[exc.why], str(exc)) from None


async def perform(request: Request, who: Whoami, command: str, **args: Any) -> JSONResponse:
    """`run`, answered as JSON."""
    result = await run(request, who, command, **args)
    # Returned as is: the response models document the shapes (and the tests hold the
    # answers to them); validating 5,000 devices again on every request costs 0.3 s.
    return JSONResponse(result)


router = APIRouter()


@router.get("/api/whoami", response_model=Whoami, tags=["site"], responses=READ)
async def whoami(who: Caller) -> Whoami:
    """Whose token this is, and its role."""
    return who


@router.get("/api/site", response_model=SiteOut, tags=["site"], responses=READ)
async def site(request: Request, who: Caller) -> Any:
    """The site, the gateway's clock and its counters."""
    return await perform(request, who, "status")


@router.get("/api/devices", response_model=list[DeviceOut], tags=["devices"], responses=READ)
async def devices(request: Request, who: Caller) -> Any:
    """Every device with its latest reading (battery, signal, ...) and active faults."""
    return await perform(request, who, "devices")


@router.get("/api/devices/{device_id}", response_model=DeviceDetail, tags=["devices"], responses=ONE)
async def device(request: Request, who: Caller, device_id: str) -> Any:
    """One device with its recent history."""
    return await perform(request, who, "device", id=device_id)


@router.post("/api/devices/{device_id}/poll", tags=["devices"], responses=COMMAND)
async def poll(request: Request, who: Caller, device_id: str) -> Any:
    """Poll the device now (engineer)."""
    return await perform(request, who, "poll", id=device_id)


@router.post("/api/devices/{device_id}/selftest", tags=["devices"], responses=COMMAND)
async def selftest(request: Request, who: Caller, device_id: str) -> Any:
    """Ask the device to test itself, then read the result (engineer)."""
    return await perform(request, who, "selftest", id=device_id)


@router.get("/api/faults", response_model=list[FaultOut], tags=["faults"], responses=READ)
async def faults(request: Request, who: Caller) -> Any:
    """Faults raised now."""
    return await perform(request, who, "faults")


@router.get("/api/maintenance", tags=["maintenance"], responses=READ)
async def maintenance(request: Request, who: Caller) -> Any:
    """The maintenance visit running now, with what was seen so far, and the last visits."""
    return await perform(request, who, "maintenance")


@router.post("/api/maintenance/start", tags=["maintenance"], responses=MOVE)
async def maintenance_start(request: Request, who: Caller, body: VisitIn | None = None) -> Any:
    """Put the site into maintenance (engineer): covers opened and batteries taken out are
    findings of the visit, not tickets, until it is finished or its limit passes."""
    hours = {} if body is None or body.hours is None else {"hours": body.hours}
    return await perform(request, who, "maintenance_start", **hours)


@router.post("/api/maintenance/finish", tags=["maintenance"], responses=MOVE)
async def maintenance_finish(request: Request, who: Caller) -> Any:
    """Finish the running visit (engineer): its report, every device tested, untested or failed."""
    return await perform(request, who, "maintenance_finish")


@router.get("/api/maintenance/visits/{visit_id}", tags=["maintenance"], responses=ONE)
async def visit(request: Request, who: Caller, visit_id: TicketId) -> Any:
    """A visit's report; `?format=html` for the printable page."""
    doc = await run(request, who, "visit", id=visit_id)
    if request.query_params.get("format") == "html" and isinstance(doc, dict) and "devices" in doc:
        from .maintenance import report_html

        return HTMLResponse(report_html(doc))
    return JSONResponse(doc)


@router.get("/api/tickets", response_model=list[TicketOut], tags=["tickets"], responses=READ)
async def tickets(
    request: Request, who: Caller, all: Annotated[bool, Query(description="include closed tickets")] = False
) -> Any:
    """Tickets with every clock's due time, remaining time and state."""
    return await perform(request, who, "tickets", all=all)


@router.get("/api/tickets/{ticket_id}", response_model=TicketOut, tags=["tickets"], responses=ONE)
async def ticket(request: Request, who: Caller, ticket_id: TicketId) -> Any:
    return await perform(request, who, "ticket", id=ticket_id)


@router.post("/api/tickets/{ticket_id}/user_action", response_model=TicketOut, tags=["tickets"], responses=MOVE)
async def user_action(request: Request, who: Caller, ticket_id: TicketId, body: UserActionIn) -> Any:
    """Record what the customer did about the failure (engineer), as the failure record asks."""
    return await perform(request, who, "user_action", id=ticket_id, text=body.text)


@router.post("/api/tickets/{ticket_id}/out_of_service", response_model=TicketOut, tags=["tickets"], responses=MOVE)
async def out_of_service(request: Request, who: Caller, ticket_id: TicketId) -> Any:
    """The ticket's device is out of service (engineer): its downtime runs from its last reading."""
    return await perform(request, who, "out_of_service", id=ticket_id)


@router.post("/api/tickets/{ticket_id}/in_service", response_model=TicketOut, tags=["tickets"], responses=MOVE)
async def in_service(request: Request, who: Caller, ticket_id: TicketId) -> Any:
    """The ticket's device is back in service (engineer): its next reading ends the downtime."""
    return await perform(request, who, "in_service", id=ticket_id)


@router.post("/api/tickets/{ticket_id}/{action}", response_model=TicketOut, tags=["tickets"], responses=MOVE)
async def move(
    request: Request,
    who: Caller,
    ticket_id: TicketId,
    action: Annotated[str, PathParam(pattern=f"^({'|'.join(MOVES)})$")],
    body: MoveIn | None = None,
) -> Any:
    """Move a ticket (engineer): ack, dispatch, arrive, resolve, close. 409 when the ticket's
    state does not allow it."""
    return await perform(request, who, action, id=ticket_id, note=body.note if body else "")


async def prometheus(request: Request) -> Response:
    """Prometheus text format."""
    state = _state(request)
    if not state.metrics_public:
        holder(await bearer(request), request)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD / "index.html")


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return Response(status_code=204)


@router.get("/dashboard/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    if name not in ("dashboard.js", "dashboard.css"):
        raise HTTPException(404, "no such file")
    return FileResponse(DASHBOARD / name)


async def crashed(request: Request, exc: Exception) -> JSONResponse:
    log.exception("http %s %s failed", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)


class _GuardedApp(FastAPI):
    """FastAPI with the guard outermost, around its error handling too (a 500 carries the
    security headers like any answer)."""

    def build_middleware_stack(self) -> ASGIApp:
        return Guard(super().build_middleware_stack(), self.state.alarmgw)


def build_app(
    ops: Operations,
    tokens: ApiTokens,
    metrics: GatewayMetrics,
    metrics_public: bool = False,
    clock: Clock | None = None,
) -> FastAPI:
    """The API of one gateway: the routes above, on that gateway's operations and tokens,
    behind the guard with the site's `http` settings.

    `clock` times the guard (rates, log lines): the real one unless a test gives another,
    since a client's rate is in real seconds whatever the gateway's clock says."""
    settings = ops.view.site.config.http or HttpConfig(tokens_file=Path("api-tokens.yaml"))
    clock = clock or SystemClock()
    app = _GuardedApp(
        title="alarmgw",
        version=__version__,
        description="One site's alarm gateway: devices, faults, tickets and their service clocks.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # the Swagger page loads from a CDN a site box may not reach
        redoc_url=None,
    )
    unknown_token = Tally("refused: no or unknown token", clock)
    app.state.alarmgw = ApiState(ops, tokens, metrics, metrics_public, settings, clock, unknown_token)
    app.include_router(router)
    # Whether /metrics wants a token is the site's choice, and its documentation follows it.
    app.add_api_route(
        "/metrics",
        prometheus,
        methods=["GET"],
        tags=["metrics"],
        response_class=Response,
        responses=PUBLIC if metrics_public else READ,
        openapi_extra=None if metrics_public else {"security": [{"HTTPBearer": []}]},
    )
    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(RequestValidationError, invalid_request)
    return app
