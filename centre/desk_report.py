"""The monthly service report of one site at the desk: as JSON, or as the printable page or
its PDF to hand to the customer (both as a file to save: the desk's own pages may run no
inline style, the report's page carries its style within)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from .desk_api import Site, need  # the desk's permission check and site name; desk_api takes this router in
from .desk_auth import Permission, User
from .service_report import Month, ReportError, build, gather
from .service_report_page import PdfUnavailable, render_html, render_pdf

router = APIRouter()
MONTH_SCHEMA: dict[str, object] = {"pattern": r"^[0-9]{4}-(0[1-9]|1[0-2])$", "examples": ["2026-11"]}


@router.get(
    "/api/sites/{site}/report",
    summary="A site's monthly service report (one calendar month, UTC): JSON, a printable page or its PDF",
    response_model=None,
)
async def report_route(
    request: Request,
    _u: Annotated[User, Depends(need(Permission.READ))],
    site: Site,
    month: Annotated[
        str,
        # The shape is documented, not enforced here: a month refused is named in one sentence.
        Query(max_length=20, description="YYYY-MM, UTC; not one that has not begun", json_schema_extra=MONTH_SCHEMA),
    ],
    format: Literal["json", "html", "pdf"] = "json",
) -> dict[str, object] | Response:
    desk = request.app.state.desk
    now = desk.clock.now()
    try:
        asked = Month.parse(month)
        asked.check(now)
    except ReportError as exc:
        raise HTTPException(422, str(exc)) from None
    async with desk.pool.connection() as conn:
        facts = await gather(conn, site, asked, now)
    if facts is None:
        raise HTTPException(404, f"no site {site} at the centre")
    report = build(facts)
    if format == "json":
        return report
    # Drawing the charts and laying out the PDF take a CPU for a moment: off the desk's loop.
    page = await asyncio.to_thread(render_html, report)
    name = f"service-report-{site}-{asked}.{format}"
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    if format == "html":
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)
    try:
        pdf = await asyncio.to_thread(render_pdf, page)
    except PdfUnavailable as exc:
        raise HTTPException(501, str(exc)) from None
    return Response(pdf, media_type="application/pdf", headers=headers)
