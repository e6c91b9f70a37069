"""What an identity has, read straight from ARM and Graph (the emulator locally), to compare source and target.

Independent of the engine on purpose: the demo (and a sceptical operator) checks the move's result
with plain REST reads, the way a person would in the portal.

Example::

    with Inventory(emulator_url, token="local") as reader:
        before = reader.read(identity_id, resources=[...])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

MSI_API = "2023-01-31"
AUTH_API = "2022-04-01"
ARG_API = "2022-10-01"


@dataclass
class IdentityInventory:
    """Comparable keys per kind, with a label for display."""

    identity: dict[str, Any]
    items: dict[str, dict[tuple[str, ...], str]] = field(default_factory=dict)


KINDS = (
    ("roleAssignments", "Role assignments"),
    ("federatedCredentials", "Federated credentials"),
    ("groups", "Group memberships"),
    ("appRoles", "App role assignments"),
    ("attachments", "Attached resources"),
    ("accessPolicies", "Key Vault access policies"),
    ("appSettings", "App settings naming the identity"),
)
KV_API = "2023-07-01"
WEB_API = "2023-12-01"


class Inventory:
    def __init__(self, arm_url: str, graph_url: str | None = None, token: str = "local-demo") -> None:
        self.arm = httpx.Client(
            base_url=arm_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.graph_url = (graph_url or f"{arm_url.rstrip('/')}/graph/v1.0").rstrip("/")
        self._role_names: dict[str, str] = {}
        self._app_roles: dict[str, dict[str, str]] = {}

    def __enter__(self) -> Inventory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.arm.close()

    def _get(self, url: str, **params: str) -> dict[str, Any]:
        response = self.arm.get(url, params=params or None)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def _list(self, url: str, **params: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        body = self._get(url, **params)
        while True:
            items.extend(body.get("value") or [])
            link = body.get("nextLink") or body.get("@odata.nextLink")
            if not link:
                return items
            body = self._get(link)

    def role_name(self, definition_id: str) -> str:
        key = definition_id.lower()
        if key not in self._role_names:
            try:
                definition = self._get(definition_id, **{"api-version": AUTH_API})
                self._role_names[key] = str(definition.get("properties", {}).get("roleName") or definition_id)
            except httpx.HTTPError:
                self._role_names[key] = definition_id.rsplit("/", 1)[-1]
        return self._role_names[key]

    def app_role_value(self, resource_id: str, app_role_id: str) -> str:
        """An app role's ``value`` (``User.Read.All``) from the resource service principal's ``appRoles``;
        its id when the principal or the role cannot be read (``00000000-…`` is the default access role)."""
        key = resource_id.lower()
        if key not in self._app_roles:
            try:
                principal = self._get(f"{self.graph_url}/servicePrincipals/{resource_id}")
                roles = principal.get("appRoles") or []
                self._app_roles[key] = {
                    str(r.get("id")).lower(): str(r.get("value") or r.get("displayName") or r.get("id"))
                    for r in roles
                }
            except httpx.HTTPError:
                self._app_roles[key] = {}
        return self._app_roles[key].get(app_role_id.lower(), app_role_id)

    def find_resources(self, identity_id: str, subscriptions: list[str]) -> list[str]:
        """Resources whose identity block names the identity (Resource Graph: fine for discovery)."""
        query = (
            f"Resources | where tostring(identity) contains '{identity_id}' | project id | order by id asc"
        )
        response = self.arm.post(
            "/providers/Microsoft.ResourceGraph/resources",
            params={"api-version": ARG_API},
            json={"subscriptions": subscriptions, "query": query},
        )
        response.raise_for_status()
        return [str(row["id"]) for row in response.json().get("data") or []]

    def read(self, identity_id: str, resources: list[str], subscriptions: list[str]) -> IdentityInventory:
        identity = self._get(identity_id, **{"api-version": MSI_API})
        principal = str(identity.get("properties", {}).get("principalId"))
        result = IdentityInventory(identity)
        roles: dict[tuple[str, ...], str] = {}
        for sub in subscriptions:
            for ra in self._list(
                f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments",
                **{"api-version": AUTH_API, "$filter": f"principalId eq '{principal}'"},
            ):
                props = ra.get("properties", {})
                if str(props.get("principalId")).lower() != principal.lower():
                    continue
                name = self.role_name(str(props.get("roleDefinitionId")))
                scope = str(props.get("scope"))
                roles[(name.lower(), scope.lower(), str(props.get("condition") or ""))] = (
                    f"{name} @ {_short(scope)}"
                )
        result.items["roleAssignments"] = roles
        credentials = self._list(f"{identity_id}/federatedIdentityCredentials", **{"api-version": MSI_API})
        result.items["federatedCredentials"] = {
            (str(c["properties"].get("issuer")), str(c["properties"].get("subject"))): f"{c.get('name')}: "
            f"{c['properties'].get('subject')}"
            for c in credentials
        }
        groups = self._list(f"{self.graph_url}/servicePrincipals/{principal}/memberOf")
        result.items["groups"] = {(str(g["id"]),): str(g.get("displayName") or g["id"]) for g in groups}
        app_roles = self._list(f"{self.graph_url}/servicePrincipals/{principal}/appRoleAssignments")
        result.items["appRoles"] = {
            (str(a.get("resourceId")), str(a.get("appRoleId"))): (
                f"{a.get('resourceDisplayName') or a.get('resourceId')} / "
                f"{self.app_role_value(str(a.get('resourceId')), str(a.get('appRoleId')))}"
            )
            for a in app_roles
        }
        attached: dict[tuple[str, ...], str] = {}
        for resource_id in resources:
            resource = self._get(resource_id, **{"api-version": _api_for(resource_id)})
            names = {
                k.lower() for k in ((resource.get("identity") or {}).get("userAssignedIdentities") or {})
            }
            if identity_id.lower() in names:
                attached[(resource_id.lower(),)] = f"{resource.get('type', '')}/{resource.get('name', '')}"
        result.items["attachments"] = attached
        result.items["accessPolicies"] = self._access_policies(principal, subscriptions)
        result.items["appSettings"] = self._app_settings(identity, resources)
        return result

    def _access_policies(self, principal: str, subscriptions: list[str]) -> dict[tuple[str, ...], str]:
        """Access-policy entries of ``principal`` (vaults found by Resource Graph, read by a GET)."""
        query = (
            "Resources | where type =~ 'microsoft.keyvault/vaults' and tostring(properties.accessPolicies) "
            f"contains '{principal}' | project id | order by id asc"
        )
        response = self.arm.post(
            "/providers/Microsoft.ResourceGraph/resources",
            params={"api-version": ARG_API},
            json={"subscriptions": subscriptions, "query": query},
        )
        response.raise_for_status()
        found: dict[tuple[str, ...], str] = {}
        for row in response.json().get("data") or []:
            vault = self._get(str(row["id"]), **{"api-version": KV_API})
            properties = vault.get("properties") or {}
            if properties.get("enableRbacAuthorization"):
                continue
            for entry in properties.get("accessPolicies") or []:
                if str(entry.get("objectId")).lower() != principal.lower():
                    continue
                granted = entry.get("permissions") or {}
                perms = "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in sorted(granted.items()) if v)
                found[(str(row["id"]).lower(), perms)] = f"{vault.get('name')}: {perms}"
        return found

    def _app_settings(self, identity: dict[str, Any], resources: list[str]) -> dict[tuple[str, ...], str]:
        """Names of app settings (sites and slots among ``resources``) whose value is the identity's
        clientId or resource id; values come only from ``POST …/config/appsettings/list``."""
        needles = {
            str(identity.get("id", "")).lower(),
            str((identity.get("properties") or {}).get("clientId", "")).lower(),
        }
        found: dict[tuple[str, ...], str] = {}
        for resource_id in resources:
            if "/microsoft.web/sites/" not in resource_id.lower():
                continue
            response = self.arm.post(
                f"{resource_id}/config/appsettings/list", params={"api-version": WEB_API}
            )
            if response.status_code == 404:
                continue
            response.raise_for_status()
            for name, value in (response.json().get("properties") or {}).items():
                if str(value or "").lower() in needles:
                    found[(resource_id.lower(), name)] = f"{resource_id.rsplit('/', 1)[-1]}: {name}"
        return found


def _short(scope: str) -> str:
    """``/subscriptions/x/resourceGroups/rg-app`` -> ``rg rg-app``; management groups, resources alike."""
    parts = scope.strip("/").split("/")
    lower = [p.lower() for p in parts]
    if len(parts) == 2 and lower[0] == "subscriptions":
        return f"subscription {parts[1][:8]}…"
    if len(parts) == 4 and lower[2] == "resourcegroups":
        return f"rg {parts[3]}"
    if "managementgroups" in lower:
        return f"mg {parts[lower.index('managementgroups') + 1]}"
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else scope


def _api_for(resource_id: str) -> str:
    """An api-version each resource type in the estate accepts (the emulator takes any known one)."""
    known = {
        "microsoft.web/sites": "2023-12-01",
        "microsoft.compute/virtualmachines": "2024-03-01",
        "microsoft.storage/storageaccounts": "2023-05-01",
        "microsoft.keyvault/vaults": "2023-07-01",
        "microsoft.containerinstance/containergroups": "2023-05-01",
    }
    parts = resource_id.strip("/").split("/")
    kind = f"{parts[5]}/{parts[6]}".lower() if len(parts) > 6 else ""
    return known.get(kind, "2023-01-01")


def compare(before: IdentityInventory, after: IdentityInventory) -> list[tuple[str, str, bool, bool]]:
    """Rows ``(kind title, item label, on source before, on target after)`` for every item of either side."""
    rows = []
    for kind, title in KINDS:
        left, right = before.items.get(kind, {}), after.items.get(kind, {})
        for key in sorted(set(left) | set(right)):
            rows.append((title, left.get(key) or right.get(key) or "", key in left, key in right))
    return rows
