"""AWS Step Functions' end states: ``POST /aws/step-functions/events``.

Takes Amazon EventBridge "Step Functions Execution Status Change" events, one event or a
JSON array of up to 1,000, as an EventBridge API destination posts them (a rule on
``{"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]}``
whose target is this endpoint), and answers ``202`` with the stored event ids once they
are durable. The mapping is in :mod:`waymark.translate.stepfunctions`. Errors are RFC 9457
problem details naming each bad field, as on ``/v1``. The tenant is the optional
``Waymark-Tenant`` header (the API destination's connection can send it).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from waymark.api.deps import Tenant, json_bytes, read_body, services, submit_records
from waymark.ingest import load_json, to_records
from waymark.translate.stepfunctions import parse

router = APIRouter(tags=["AWS Step Functions"])


@router.post(
    "/aws/step-functions/events",
    status_code=202,
    summary="Record Step Functions executions' status changes (Amazon EventBridge)",
)
async def post_execution_events(request: Request, tenant: Tenant) -> Response:
    """The execution's name is the trace id. SUCCEEDED finishes the trace OK; FAILED,
    TIMED_OUT and ABORTED finish it FAILED with the execution's error and cause as its
    error; RUNNING is recorded as a step in progress. A batch is stored whole or not at
    all; an event delivered again is stored once."""
    svc = services(request)
    records = to_records(parse(load_json(await read_body(request))), tenant, svc.pipelines)
    await submit_records(request, records)
    ids = [r.event_id for r in records]
    return json_bytes(orjson.dumps({"accepted": len(ids), "event_ids": ids}), 202)
