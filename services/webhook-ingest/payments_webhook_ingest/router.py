"""`POST /api/v1/webhooks/stripe` and `POST /api/v1/webhooks/authnet` (no bearer token: the provider's
signature is the credential)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from payments_webhook_ingest.ingest import WebhookIngest

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


def webhook_ingest(request: Request) -> WebhookIngest:
    ingest: WebhookIngest = request.app.state.webhook_ingest
    return ingest


Ingest = Annotated[WebhookIngest, Depends(webhook_ingest)]


@router.post("/stripe", summary="Receive a Stripe event (verified with Stripe-Signature)")
async def stripe_webhook(request: Request, ingest: Ingest) -> dict[str, Any]:
    return await ingest.receive_stripe(request)


@router.post("/authnet", summary="Receive an Authorize.net notification (verified with X-ANET-Signature)")
async def authnet_webhook(request: Request, ingest: Ingest) -> dict[str, Any]:
    return await ingest.receive_authnet(request)
