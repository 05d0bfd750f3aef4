"""``/v1/webhooks``: a tenant's webhook subscriptions (admin role) and their deliveries.

The secret that signs a subscription's messages is in the answer that creates it and in
no other answer (nor in any log line).
"""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from waymark.api.deps import Cursor, Tenant, datasets_of, json_response, services
from waymark.auth.grants import Role
from waymark.errors import Forbidden, NotFound
from waymark.ingest import invalid
from waymark.model import iso, now_us
from waymark.store.base import Delivery, Page, Webhook
from waymark.webhooks import BadTarget, new_secret, resolve

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

#: the most deliveries ``GET /v1/webhooks/{id}/deliveries`` answers with
MAX_DELIVERIES = 100

EventType = Literal["trace.started", "trace.succeeded", "trace.failed", "trace.stalled"]


class WebhookIn(BaseModel):
    """A new subscription."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=2000)]
    events: Annotated[list[EventType], Field(min_length=1, max_length=4)]
    dataset: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    component: Annotated[str | None, Field(min_length=1, max_length=200)] = None


def shown(hook: Webhook) -> dict[str, Any]:
    """A subscription as answered: never its secret."""
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "dataset": hook.dataset,
        "component": hook.component,
        "created_at": iso(hook.created_us),
        "failed_at": iso(hook.failed_us) if hook.failed_us is not None else None,
        "failure": hook.failure,
    }


def _delivery(d: Delivery) -> dict[str, Any]:
    def at(us: int | None) -> str | None:
        return None if us is None else iso(us)

    return {
        "id": d.id,
        "trace_id": d.trace_id,
        "type": d.type,
        "created_at": at(d.created_us),
        "attempts": d.attempts,
        "attempted_at": at(d.last_us),
        "status_code": d.status,
        "error": d.error,
        "delivered_at": at(d.delivered_us),
        "gave_up_at": at(d.gave_up_us),
    }


@router.post("", status_code=201, summary="Subscribe a URL to trace state changes")
async def create_webhook(request: Request, tenant: Tenant, body: WebhookIn) -> Response:
    """Answers the subscription with its signing secret (`whsec_...`), shown only here."""
    svc = services(request)
    datasets = datasets_of(request, Role.ADMIN)
    if datasets is not None and body.dataset not in datasets:
        raise Forbidden(
            "this credential may subscribe only to its datasets' traces",
            [{"loc": ["body", "dataset"], "msg": f"must be one of {sorted(datasets)}"}],
        )
    check = functools.partial(resolve, allow_private=svc.webhook_allow_private)
    try:
        await svc.in_thread(check, body.url)
    except BadTarget as exc:
        raise invalid([{"loc": ["body", "url"], "msg": str(exc)}]) from exc
    hook = Webhook(
        tenant=tenant,
        id=f"wh_{uuid.uuid4().hex}",
        url=body.url,
        events=tuple(dict.fromkeys(body.events)),
        secret=new_secret(),
        created_us=now_us(),
        dataset=body.dataset,
        component=body.component,
    )
    await svc.in_thread(svc.store.add_webhook, hook)
    return json_response({**shown(hook), "secret": hook.secret}, 201)


@router.get("", summary="A tenant's webhook subscriptions, oldest first")
async def list_webhooks(
    request: Request,
    tenant: Tenant,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> Response:
    svc = services(request)
    page: Page[Webhook] = await svc.in_thread(
        functools.partial(svc.store.webhooks, tenant, limit=limit, cursor=cursor)
    )
    return json_response({"items": [shown(h) for h in page.items], "next_cursor": page.next_cursor})


async def _found(request: Request, tenant: str, webhook_id: str) -> Webhook:
    svc = services(request)
    hook = await svc.in_thread(svc.store.webhook, tenant, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id!r}")
    return hook


@router.get("/{webhook_id}", summary="One webhook subscription")
async def get_webhook(request: Request, tenant: Tenant, webhook_id: str) -> Response:
    return json_response(shown(await _found(request, tenant, webhook_id)))


@router.delete("/{webhook_id}", status_code=204, summary="Remove a webhook subscription")
async def delete_webhook(request: Request, tenant: Tenant, webhook_id: str) -> Response:
    svc = services(request)
    if not await svc.in_thread(svc.store.delete_webhook, tenant, webhook_id):
        raise NotFound(f"no webhook {webhook_id!r}")
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", summary="A subscription's latest delivery attempts")
async def get_deliveries(
    request: Request,
    tenant: Tenant,
    webhook_id: str,
    limit: Annotated[int, Query(ge=1, le=MAX_DELIVERIES)] = MAX_DELIVERIES,
) -> Response:
    """The messages last attempted, latest first: status code, error and time of each
    one's last attempt, and how many attempts it took."""
    svc = services(request)
    await _found(request, tenant, webhook_id)
    found = await svc.in_thread(
        functools.partial(svc.store.deliveries, tenant, webhook_id, limit=limit)
    )
    return json_response({"items": [_delivery(d) for d in found]})
