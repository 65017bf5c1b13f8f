"""The desk: one HTTP API (OpenAPI at /api/openapi.json) and one page over every site's
tickets. Viewers read; engineers also move tickets (through a `Relay` to the site, which
stays the authority on its tickets); dispatchers also put engineers on tickets and read the
audit trail. Every action is audited, refusals too. `build_app` wires it, `serve` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Annotated, Literal, Protocol

import psycopg
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from alarmgw.asgi_guard import MAX_HEAD_BYTES, invalid_request
from alarmgw.clock import Clock, iso
from alarmgw.diagnostics.tickets import MOVES, TRANSITIONS, IllegalTransition, TicketState, moves_from

from . import desk_auth as auth
from . import desk_sla, desk_store, liveness
from .desk_auth import Permission, User
from .desk_config import DeskConfig
from .desk_guard import TOKEN, USER, DeskGuard, Unavailable
from .desk_incidents import incidents_of
from .relay import RelayRefused, RelayUnreachable

__all__ = ["DeskConfig", "Relay", "RelayRefused", "RelayUnreachable", "build_app", "serve"]

STATIC = {"index.html": "text/html", "desk.js": "text/javascript", "desk.css": "text/css"}
MAX_LIST = 5000  # tickets or sites in one answer; `total` says how many there are
PLAN_RANGE = timedelta(days=30)  # a planned arrival further from now than this is a typo
Site = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Ref = Annotated[
    str, Path(pattern=desk_store.REF.pattern, description="a gateway ticket's id, or c + a centre ticket's")
]
# No control characters (PostgreSQL's text cannot hold NUL; the rest is never a name).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Filter = Annotated[str | None, Query(max_length=100, pattern=PRINTABLE)]
UserName = Annotated[str, Field(pattern=auth.NAME.pattern)]


class Relay(Protocol):
    """How a move made at the desk reaches the site: as a signed remote command."""

    async def move(self, site: str, ticket_id: int, action: str, engineer: str, note: str, made_at: datetime) -> object:
        """Ask the site to make the move; `RelayRefused` or `RelayUnreachable` if it does not."""
        ...


@dataclass(frozen=True, slots=True)
class Waiting:
    """The pool, waiting at most `wait_s` for a connection: a request to a database that does
    not answer gets its 503 in seconds, not after the pool's own half minute."""

    pool: AsyncConnectionPool
    wait_s: float

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[auth.Conn]:
        return self.pool.connection(timeout=self.wait_s if timeout is None else timeout)


@dataclass(frozen=True, slots=True)
class Desk:
    pool: auth.Pool
    config: DeskConfig
    clock: Clock
    relay: Relay | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LoginIn(_Strict):
    name: UserName
    password: str = Field(min_length=1, max_length=auth.MAX_PASSWORD)


class AssignIn(_Strict):
    engineer: UserName
    planned_arrival: AwareDatetime = Field(description="ISO 8601 with an offset; stored in UTC")

    @field_validator("planned_arrival")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("a time that exists in UTC") from None


class MoveIn(_Strict):
    action: Literal["ack", "dispatch", "arrive", "resolve", "close"]
    note: str = Field(default="", max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")


def build_app(pool: AsyncConnectionPool, config: DeskConfig, clock: Clock, relay: Relay | None = None) -> FastAPI:
    """The desk's ASGI app over an open pool on a migrated database."""
    conns = Waiting(pool, config.db_wait_s)
    desk = Desk(conns, config, clock, relay)
    app = FastAPI(title="alarmgw service centre desk", openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    app.state.desk = desk
    files = {name: (resources.files("alarmgw.centre") / "desk" / name).read_bytes() for name in STATIC}

    async def unavailable(_r: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": "the centre's database does not answer; try again shortly"}, status_code=503)

    app.add_exception_handler(psycopg.OperationalError, unavailable)
    app.add_exception_handler(PoolTimeout, unavailable)
    app.add_exception_handler(RequestValidationError, invalid_request)
    from . import (
        desk_complaints,
        desk_parts,
        desk_plans,
        desk_report,
    )  # their routes use this module's permission check

    app.include_router(desk_complaints.router)
    app.include_router(desk_plans.router)
    app.include_router(desk_parts.router)
    app.include_router(desk_report.router)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(files["index.html"], media_type="text/html; charset=utf-8")

    @app.get("/desk/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in files:
            raise HTTPException(404, f"no file {name[:60]!r} on the desk")
        return Response(files[name], media_type=f"{STATIC[name]}; charset=utf-8")

    @app.post("/api/login", summary="A bearer token for a name and password")
    async def login(body: LoginIn) -> dict[str, object]:
        made = await auth.login(conns, body.name, body.password, clock.now(), config.token_lifetime_s)
        if made is None:
            raise HTTPException(401, "wrong name or password")
        return {"token": made.token, "expires_at": iso(made.expires_at), "name": made.user.name, "role": made.user.role}

    @app.post("/api/logout", summary="End this token")
    async def logout(request: Request, user: Annotated[User, Depends(need(Permission.READ))]) -> dict[str, str]:
        await auth.logout(conns, request.scope[TOKEN], user, clock.now())
        return {"detail": "logged out"}

    @app.get("/api/me", summary="Who this token belongs to")
    async def me(user: Annotated[User, Depends(need(Permission.READ))]) -> dict[str, object]:
        return {"name": user.name, "role": user.role, "may": sorted(auth.GRANTS[user.role])}

    @app.get("/api/tickets", summary="Every open ticket of every site, the nearest breach first")
    async def tickets(
        _u: Annotated[User, Depends(need(Permission.READ))],
        site: Filter = None,
        area: Filter = None,
        fault: Filter = None,
        state: Filter = None,
        engineer: Filter = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 500,
    ) -> dict[str, object]:
        f = desk_store.TicketFilter(site, area, fault, state, engineer)
        async with conns.connection() as conn:
            total, rows = await desk_store.open_tickets(conn, clock.now(), f, limit)
            await desk_parts.annotate(conn, rows)
        return {"at": iso(clock.now()), "total": total, "tickets": rows}

    @app.get("/api/tickets/{site}/{ref}", summary="One ticket with its history and its device's readings")
    async def one_ticket(
        _u: Annotated[User, Depends(need(Permission.READ))], site: Site, ref: Ref
    ) -> dict[str, object]:
        async with conns.connection() as conn:
            found = await desk_store.ticket(conn, site, ref, clock.now())
            if found is not None:
                await desk_parts.annotate(conn, [found])
        if found is None:
            raise HTTPException(404, f"no ticket {ref} at site {site}")
        return found

    @app.post("/api/tickets/{site}/{ref}/assign", summary="Put an engineer on a ticket, with a planned arrival")
    async def assign(
        user: Annotated[User, Depends(need(Permission.ASSIGN, "assign"))], site: Site, ref: Ref, body: AssignIn
    ) -> dict[str, object]:
        now = clock.now()
        planned = body.planned_arrival
        target = f"{site}/{ref}"
        detail: dict[str, object] = {"engineer": body.engineer, "planned_arrival": iso(planned)}
        why: tuple[int, str] | None = None
        async with conns.connection() as conn:
            open_ = await desk_store.is_open(conn, site, ref)
            role = await desk_store.engineer_role(conn, body.engineer)
            if open_ is None:
                why = (404, f"no ticket {ref} at site {site}")
            elif not open_:
                why = (409, f"ticket {ref} at site {site} is resolved or closed")
            elif role not in (auth.Role.ENGINEER, auth.Role.DISPATCHER):
                why = (422, f"{body.engineer!r} is not a desk user with the engineer or dispatcher role")
            elif abs(planned - now) > PLAN_RANGE:
                why = (422, f"a planned arrival within {PLAN_RANGE.days} days of now")
            async with conn.transaction():
                if why is None:
                    await desk_store.assign(conn, site, ref, body.engineer, planned, user.name, now)
                await auth.audit(conn, now, user.name, "assign", target, f"refused: {why[1]}" if why else "ok", detail)
        if why:
            raise HTTPException(*why)
        async with conns.connection() as conn:
            return await desk_store.ticket(conn, site, ref, now) or {}

    @app.post(
        "/api/tickets/{site}/{ref}/move",
        status_code=202,
        summary="Move a ticket: a site's is asked of its gateway, the centre's own is moved at once",
    )
    async def move(
        user: Annotated[User, Depends(need(Permission.MOVE, "move"))],
        site: Site,
        ref: Ref,
        body: MoveIn,
        response: Response,
    ) -> dict[str, object]:
        now = clock.now()
        target = f"{site}/{ref}"
        detail: dict[str, object] = {"action": body.action, "note": body.note}
        async with conns.connection() as conn:
            found = await desk_store.ticket(conn, site, ref, now)
        why: tuple[int, str] | None = None
        if found is None:
            why = (404, f"no ticket {ref} at site {site}")
        elif MOVES[body.action] not in TRANSITIONS[TicketState(str(found["state"]))]:
            allowed = ", ".join(moves_from(TicketState(str(found["state"])))) or "none"
            why = (409, f"a ticket that is {found['state']} cannot {body.action} (it may: {allowed})")
        elif found["source"] == "centre":  # the centre's own ticket: moved here and now
            try:
                async with conns.connection() as conn, conn.transaction():
                    await liveness.move(conn, site, int(ref[1:]), MOVES[body.action], now, user.name, body.note)
                    await auth.audit(conn, now, user.name, body.action, target, "ok", detail)
            except IllegalTransition as exc:  # moved by someone else meanwhile
                why = (409, str(exc))
            else:
                response.status_code = 200
                async with conns.connection() as conn:
                    moved = await desk_store.ticket(conn, site, ref, now)
                return {"detail": f"{body.action}: done at the centre", "ticket": moved}
        elif desk.relay is None:
            why = (503, "no relay to the sites is configured: the desk cannot send moves to gateways")
        else:
            try:
                await desk.relay.move(site, int(ref), body.action, user.name, body.note, now)
            except RelayRefused as exc:
                why = (409, f"the site refused: {exc}")
            except RelayUnreachable as exc:
                why = (504, f"the site did not answer: {exc}")
        async with conns.connection() as conn:
            await auth.audit(conn, now, user.name, body.action, target, f"refused: {why[1]}" if why else "ok", detail)
        if why:
            raise HTTPException(*why)
        return {"detail": f"{body.action} sent to {site}; the ticket changes when the site reports it"}

    @app.get("/api/sites", summary="Every site: online, last heard, devices in fault, open tickets")
    async def sites(
        _u: Annotated[User, Depends(need(Permission.READ))], limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 1000
    ) -> dict[str, object]:
        async with conns.connection() as conn:
            total, rows = await desk_store.sites(conn, limit)
        return {"at": iso(clock.now()), "total": total, "sites": rows}

    @app.get("/api/incidents", summary="Open tickets of many sites grouped as one incident each")
    async def incidents(_u: Annotated[User, Depends(need(Permission.READ))]) -> dict[str, object]:
        async with conns.connection() as conn:
            rows = await desk_store.open_summaries(conn)
        return {"at": iso(clock.now()), **incidents_of(rows, config.incidents)}

    @app.get("/api/sla", summary="Share of service clocks met since a day (UTC)", response_model=None)
    async def sla(
        _u: Annotated[User, Depends(need(Permission.READ))],
        since: Annotated[date, Query(description="YYYY-MM-DD, UTC")],
        by: desk_sla.By = "fault",
        format: Literal["json", "csv"] = "json",
    ) -> dict[str, object] | Response:
        now = clock.now()
        if since > now.date():
            raise HTTPException(422, f"since {since} is in the future")
        async with conns.connection() as conn:
            report = await desk_sla.report(conn, since, by, now)
        if format == "csv":
            name = f"sla-since-{since}-by-{by}.csv"
            headers = {"content-disposition": f'attachment; filename="{name}"'}
            return Response(desk_sla.as_csv(report), media_type="text/csv; charset=utf-8", headers=headers)
        return {"since": since.isoformat(), "by": by, "at": iso(now), "groups": desk_sla.as_json(report)}

    @app.get("/api/audit", summary="The latest of the audit trail")
    async def audit(
        _u: Annotated[User, Depends(need(Permission.AUDIT))], limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, object]:
        async with conns.connection() as conn:
            cur = await conn.execute(
                "SELECT at, user_name, action, target, result, detail FROM desk_audit ORDER BY id DESC LIMIT %s",
                (limit,),
            )
            rows = await cur.fetchall()
        keys = ("at", "user", "action", "target", "result", "detail")
        return {"audit": [dict(zip(keys, (iso(r[0]), *r[1:]), strict=True)) for r in rows]}  # type: ignore[arg-type]

    async def holder(token: str) -> User | None:
        try:
            return await auth.holder(conns, token, clock.now())
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise Unavailable("the centre's database does not answer; try again shortly") from exc

    app.add_middleware(DeskGuard, config=config, clock=clock, holder=holder)
    return app


_bearer = HTTPBearer(auto_error=False, description="from POST /api/login")


def need(permission: Permission, action: str | None = None) -> Callable[..., Awaitable[User]]:
    """A route's permission; a refused action (not a read) goes into the audit trail."""

    async def dependency(request: Request, _b: Annotated[object, Depends(_bearer)]) -> User:
        user = request.scope.get(USER)
        if not isinstance(user, User):
            raise HTTPException(401, "log in first")
        if not user.may(permission):
            why = f"a {user.role} may not {permission.value}"
            if action is not None:
                desk: Desk = request.app.state.desk
                target = "/".join(str(v) for v in request.path_params.values())
                async with desk.pool.connection() as conn:
                    await auth.audit(conn, desk.clock.now(), user.name, action, target, f"refused: {why}")
            raise HTTPException(403, why)
        return user

    return dependency


async def serve(
    pool: AsyncConnectionPool, config: DeskConfig, clock: Clock, relay: Relay | None = None, *, log_level: str = "info"
) -> None:
    """Run the desk on `config.bind`:`config.port` until cancelled, then stop it cleanly (open
    answers finish); OSError if it cannot listen. Signals stay the caller's."""
    server, sock = make_server(build_app(pool, config, clock, relay), config, log_level)
    with sock:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            server.should_exit = True
            await serving
            raise


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # signals belong to the centre's process, not to the web server


def make_server(app: FastAPI, config: DeskConfig, log_level: str = "info") -> tuple[uvicorn.Server, socket.socket]:
    """The server and its listening socket, bound now: a port taken fails here, and the port
    takes connections from this moment on."""
    family = socket.AF_INET6 if ":" in config.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.bind, config.port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    settings = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="off",
        server_header=False,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=15,
        limit_concurrency=256,
    )
    return _Server(settings), sock
