"""Key Vault access policies naming the identity's principal (vaults without ``enableRbacAuthorization``).

A vault that authorizes with access policies does not look at role assignments: the policy entry
``{tenantId, objectId: <principalId>, permissions: {keys, secrets, certificates, storage}}`` is the
grant. Vaults with ``enableRbacAuthorization: true`` ignore policies; their grants are role
assignments (``role_assignments.py``), so they are skipped here.

discover: Resource Graph finds vaults whose ``properties.accessPolicies`` contain the principalId;
a GET of each confirms the entry (Resource Graph lags). copy: ``PUT {vault}/accessPolicies/add``
(api 2023-07-01) with the same permissions for the new principal -- it edits only that entry; a
GET + PUT of the whole vault would race other writers. ``add`` merges, so a repeat is harmless.
check: the vault's entry for the new principal holds every source permission (the diff names the
ones missing). remove: ``PUT {vault}/accessPolicies/remove`` of the old principal's entry as it is
now (absent = done). undo: the same for the new principal's entry.

Example::

    KIND.copy(ctx, {"vault": "/subscriptions/.../vaults/kv-payments01", "tenantId": "...",
                    "permissions": {"secrets": ["get", "list"]}}).outcome   # "updated"
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError

from activities._azure import classify, get_resource, same_id
from activities.access.base import Access, Found, Missing, short_key
from shared.context import ItemResult, PhaseContext

API = "2023-07-01"
VAULT_TYPE = "microsoft.keyvault/vaults"
KINDS_OF_PERMISSION = ("keys", "secrets", "certificates", "storage")


def _policies(vault: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((vault or {}).get("properties") or {}).get("accessPolicies") or [])


def _entry(vault: dict[str, Any] | None, principal_id: str) -> dict[str, Any] | None:
    return next((p for p in _policies(vault) if same_id(p.get("objectId"), principal_id)), None)


def _permissions(entry: dict[str, Any] | None) -> dict[str, list[str]]:
    granted = (entry or {}).get("permissions") or {}
    return {
        k: sorted(str(p).lower() for p in granted.get(k) or []) for k in KINDS_OF_PERMISSION if granted.get(k)
    }


def _name(vault_id: str) -> str:
    return vault_id.rstrip("/").rsplit("/", 1)[-1]


class KeyVaultPolicies(Access):
    key = "keyVaultAccessPolicies"
    title = "Key Vault access policies"
    copy_kind = "kvpolicy"
    remove_kind = "unkvpolicy"
    candidate_types = (VAULT_TYPE,)
    candidate_needle = ("tostring(properties.accessPolicies)", "principal_id")

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        entries = []
        for row in found.rows_of(VAULT_TYPE):
            vault = get_resource(ctx.clients, str(row["id"]))
            found.count("keyVaultsRead")
            if vault is None or (vault.get("properties") or {}).get("enableRbacAuthorization"):
                continue
            entry = _entry(vault, found.source["principalId"])
            if entry is not None:
                entries.append(
                    {
                        "vault": str(vault.get("id") or row["id"]),
                        "tenantId": entry.get("tenantId"),
                        "applicationId": entry.get("applicationId"),
                        "permissions": _permissions(entry),
                    }
                )
        return entries

    def copy_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"kvpolicy-{short_key(entry['vault'])}"

    def _edit(self, ctx: PhaseContext, vault_id: str, operation: str, policy: dict[str, Any]) -> None:
        body = {"properties": {"accessPolicies": [{k: v for k, v in policy.items() if v is not None}]}}
        try:
            ctx.clients.arm("PUT", f"{vault_id}/accessPolicies/{operation}", API, body)
        except HttpResponseError as exc:
            raise classify(exc, vault_id) from exc

    def copy(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        policy = {
            "tenantId": entry["tenantId"] or ctx.snapshot["identity"].get("tenantId"),
            "objectId": ctx.target["principalId"],
            "permissions": entry["permissions"],
        }
        self._edit(ctx, entry["vault"], "add", policy)
        return ItemResult("updated", {"vault": entry["vault"], "permissions": entry["permissions"]})

    def check(self, ctx: PhaseContext, entries: list[dict[str, Any]]) -> list[Missing]:
        missing = []
        for entry in entries:
            vault = get_resource(ctx.clients, entry["vault"])
            have = _permissions(_entry(vault, ctx.target["principalId"]))
            lacking = {k: sorted(set(v) - set(have.get(k, []))) for k, v in entry["permissions"].items()}
            lacking = {k: v for k, v in lacking.items() if v}
            if lacking:
                listed = ", ".join(f"{k} {'/'.join(v)}" for k, v in lacking.items())
                missing.append(
                    Missing(
                        f"Key Vault {_name(entry['vault'])}: access policy of the new principal lacks {listed}",
                        entry["vault"],
                    )
                )
        return missing

    def remove_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"unkvpolicy-{short_key(entry['vault'])}"

    def _remove_principal(self, ctx: PhaseContext, vault_id: str, principal_id: str) -> bool:
        """Remove ``principal_id``'s entry as it is now (its current permissions); False if absent."""
        vault = get_resource(ctx.clients, vault_id)
        current = _entry(vault, principal_id)
        if current is None:
            return False
        policy = {
            "tenantId": current.get("tenantId"),
            "objectId": current.get("objectId"),
            "applicationId": current.get("applicationId"),
            "permissions": current.get("permissions") or {},
        }
        self._edit(ctx, vault_id, "remove", policy)
        return True

    def remove(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        removed = self._remove_principal(ctx, entry["vault"], ctx.snapshot["identity"]["principalId"])
        return ItemResult("deleted" if removed else "absent", {"vault": entry["vault"]})

    def undo(self, ctx: PhaseContext, target: dict[str, Any]) -> int:
        return sum(
            self._remove_principal(ctx, entry["vault"], target["principalId"])
            for entry in ctx.snapshot.get(self.key) or []
        )


KIND = KeyVaultPolicies()
