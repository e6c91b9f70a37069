"""Key Vault access policies: ``PUT {vault}/accessPolicies/{add|replace|remove}`` (``Vaults_UpdateAccessPolicy``,
api 2023-07-01 and later; example ``updateAccessPoliciesAdd.json``).

The vault itself (``properties.accessPolicies[]``, ``enableRbacAuthorization``) is an ordinary resource in
the generic store; this edits only the entries the request names, so concurrent writers of other
entries are not overwritten (FACTS.md "Access that lives outside Azure RBAC"). An entry is identified by
``tenantId`` + ``objectId`` + ``applicationId`` (compared case-insensitively):
- ``add``: a new entry is appended; for an existing one the listed permissions are merged in (union).
- ``replace``: the entry's permissions become exactly the listed ones (appended when absent).
- ``remove``: the listed permissions are taken out of the entry; an entry left without any permission
  (or named with no permissions at all) is removed. Unknown entries are ignored.
Answer: **200** ``{"id": "{vault}/accessPolicies/", "type": "Microsoft.KeyVault/vaults/accessPolicies",
"properties": {"accessPolicies": [<the request's entries>]}}`` as in the example (the spec also allows
201; the vault's full list is read with a GET of the vault). Errors: 404 ``ResourceGroupNotFound`` /
``ResourceNotFound`` (vault), 400 ``BadRequest`` for a body that is not
``{"properties": {"accessPolicies": [...]}}`` or an entry without a GUID ``tenantId``/``objectId`` or with an
unknown permission, 400 ``BadRequest`` for an operation kind other than add/replace/remove, 405 for
methods other than PUT.
"""

from __future__ import annotations

import copy
from typing import Any

from emulator.arm_resources import require_group
from emulator.errors import ArmError, bad_request, not_found
from emulator.ids import is_guid, key
from emulator.state import State
from emulator.wire import Request, Response

VAULT_TYPE = "Microsoft.KeyVault/vaults"
KINDS = ("add", "replace", "remove")
# Permission values of the 2023-07-01 spec (``KeyPermissions``, ``SecretPermissions``, ...), lower-cased.
PERMISSIONS = {
    "keys": {"all", "encrypt", "decrypt", "wrapkey", "unwrapkey", "sign", "verify", "get", "list", "create",
             "update", "import", "delete", "backup", "restore", "recover", "purge", "release", "rotate",
             "getrotationpolicy", "setrotationpolicy"},
    "secrets": {"all", "get", "list", "set", "delete", "backup", "restore", "recover", "purge"},
    "certificates": {"all", "get", "list", "delete", "create", "import", "update", "managecontacts",
                     "getissuers", "listissuers", "setissuers", "deleteissuers", "manageissuers", "recover",
                     "purge", "backup", "restore"},
    "storage": {"all", "get", "list", "delete", "set", "update", "regeneratekey", "recover", "purge", "backup",
                "restore", "setsas", "listsas", "getsas", "deletesas"},
}  # fmt: skip


def _entries(body: dict[str, Any]) -> list[dict[str, Any]]:
    props = body.get("properties")
    entries = props.get("accessPolicies") if isinstance(props, dict) else None
    if not isinstance(entries, list):
        raise bad_request(
            'The request body must be {"properties": {"accessPolicies": [...]}}.',
            target="properties.accessPolicies",
        )
    for i, entry in enumerate(entries):
        where = f"properties.accessPolicies[{i}]"
        if not isinstance(entry, dict):
            raise bad_request(f"{where} must be an object.", target=where)
        for field in ("tenantId", "objectId"):
            if not isinstance(entry.get(field), str) or not is_guid(entry[field]):
                raise bad_request(f"{where}.{field} must be a GUID.", target=f"{where}.{field}")
        app = entry.get("applicationId")
        if app is not None and (not isinstance(app, str) or not is_guid(app)):
            raise bad_request(f"{where}.applicationId must be a GUID.", target=f"{where}.applicationId")
        perms = entry.get("permissions")
        if not isinstance(perms, dict):
            raise bad_request(f"{where}.permissions is required.", target=f"{where}.permissions")
        for kind, values in perms.items():
            allowed = PERMISSIONS.get(kind)
            if allowed is None or not isinstance(values, list):
                raise bad_request(f"{where}.permissions.{kind} is not a permission list.", target=where)
            for value in values:
                if not isinstance(value, str) or value.lower() not in allowed:
                    raise bad_request(
                        f"Invalid permission '{value}' in {where}.permissions.{kind}.",
                        target=f"{where}.permissions.{kind}",
                    )
    return entries


def _identity(entry: dict[str, Any]) -> tuple[str, str, str]:
    return (entry["tenantId"].lower(), entry["objectId"].lower(), (entry.get("applicationId") or "").lower())


def _union(current: list[str], extra: list[str]) -> list[str]:
    merged = list(current)
    for value in extra:
        if value.lower() not in {v.lower() for v in merged}:
            merged.append(value)
    return merged


def _apply(policies: list[dict[str, Any]], kind: str, entry: dict[str, Any]) -> None:
    match = next((p for p in policies if _identity(p) == _identity(entry)), None)
    wanted = entry["permissions"]
    if kind == "add":
        if match is None:
            policies.append(copy.deepcopy(entry))
            return
        perms = match.setdefault("permissions", {})
        for name, values in wanted.items():
            perms[name] = _union(list(perms.get(name) or []), list(values))
    elif kind == "replace":
        if match is None:
            policies.append(copy.deepcopy(entry))
        else:
            match["permissions"] = copy.deepcopy(wanted)
    elif match is not None:  # remove
        perms = match.setdefault("permissions", {})
        if not any(wanted.get(name) for name in PERMISSIONS):
            policies.remove(match)
            return
        for name, values in wanted.items():
            drop = {v.lower() for v in values}
            perms[name] = [v for v in perms.get(name) or [] if v.lower() not in drop]
        if not any(perms.get(name) for name in PERMISSIONS):
            policies.remove(match)


def update_access_policy(state: State, req: Request, sub: str, group: str, vault: str, kind: str) -> Response:
    if req.method != "PUT":
        raise ArmError(
            405, "MethodNotAllowed", f"The requested resource does not support http method '{req.method}'."
        )
    if kind.lower() not in KINDS:
        raise bad_request(
            f"The operation kind '{kind}' is not valid. Valid values are 'add', 'replace' and 'remove'.",
            target="operationKind",
        )
    entries = _entries(req.json_object())
    with state.lock:
        stored_group = require_group(state, sub, group)
        vault_id = f"{stored_group['id']}/providers/{VAULT_TYPE}/{vault}"
        existing = state.resources.get(key(vault_id))
        if existing is None or existing["type"].lower() != VAULT_TYPE.lower():
            raise not_found(VAULT_TYPE, [vault], group)
        updated = copy.deepcopy(existing)
        props = updated.setdefault("properties", {})
        policies = props.get("accessPolicies")
        if not isinstance(policies, list):
            policies = props["accessPolicies"] = []
        for entry in entries:
            _apply(policies, kind.lower(), entry)
        state.put_resource(updated["id"], updated)
        return Response(
            200,
            {
                "id": f"{updated['id']}/accessPolicies/",
                "type": "Microsoft.KeyVault/vaults/accessPolicies",
                "properties": {"accessPolicies": copy.deepcopy(entries)},
            },
        )
