"""Phase 2, create: the target identity in the target region.

Needs: the snapshot's planned ``target`` (name, resource group, region, isolationScope). Changes in
Azure: PUT one user-assigned identity, tagged ``idmove-source`` = source id and ``idmove-move`` =
move id. Idempotency key: the target resource id -- GET first; ours (tag names this move) -> reuse;
someone else's -> permanent ``NameTaken``.

Example::

    run(ctx).target  # {"id": ..., "principalId": ..., "clientId": ..., "location": "northeurope"}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.mgmt.msi.models import Identity

from activities._azure import classify
from shared.context import PhaseContext
from shared.errors import PermanentError


@dataclass
class CreateResult:
    target: dict[str, Any]
    created: bool


def run(ctx: PhaseContext) -> CreateResult:
    target, source = ctx.snapshot["target"], ctx.snapshot["identity"]
    msi = ctx.clients.msi(target["subscriptionId"]).user_assigned_identities
    created = False
    try:
        try:
            identity = msi.get(target["resourceGroup"], target["name"])
        except HttpResponseError as exc:
            if exc.status_code != 404:
                raise
            identity = None
        if identity is not None and (identity.tags or {}).get("idmove-move") != ctx.move_id:
            raise PermanentError(
                "NameTaken", f"{target['id']} exists and was not created by this move", "targetName"
            )
        if identity is None:
            tags = {**source.get("tags", {}), "idmove-source": source["id"], "idmove-move": ctx.move_id}
            scope = target.get("isolationScope")
            body = Identity(
                location=target["location"], tags=tags, isolation_scope=scope if scope == "Regional" else None
            )
            identity = msi.create_or_update(target["resourceGroup"], target["name"], body)
            created = True
    except HttpResponseError as exc:
        raise classify(exc, target["id"]) from exc
    return CreateResult(
        {
            **target,
            "id": str(identity.id),
            "principalId": str(identity.principal_id),
            "clientId": str(identity.client_id),
            "location": str(identity.location).replace(" ", "").lower(),
        },
        created,
    )
