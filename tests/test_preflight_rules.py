"""The preflight's small rules, one test each (activities/preflight.py, activities/role_conditions.py):
ARM's wildcard and notActions semantics, the scopes each rule names, the ABAC condition forms the infra and
Microsoft's examples use, and how a refused read becomes a blocker. No Azure: the end-to-end proof is
tests/test_infra_permissions.py."""

from __future__ import annotations

from typing import Any

import pytest

from activities import preflight
from activities.role_conditions import Unreadable, allows
from shared import permissions
from shared.context import PhaseContext
from shared.errors import PermanentError
from shared.models import MoveRequest
from shared.settings import Settings

SUB = "/subscriptions/2f7c2b4e-1d3a-4c5b-9e8f-0a1b2c3d4e5f"
IDENTITY = f"{SUB}/resourceGroups/rg-app/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app-id"
WEB = f"{SUB}/resourceGroups/rg-app/providers/Microsoft.Web/sites/web"
OTHER_WEB = f"{SUB}/resourceGroups/rg-ne/providers/Microsoft.Web/sites/web-ne"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
UAA = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
READER = f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
W, D = "Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete"
ATTR = "Microsoft.Authorization/roleAssignments"
INFRA_CONDITION = (
    f"((!(ActionMatches{{'{W}'}})) OR (@Request[{ATTR}:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals "
    f"{{{OWNER}, {UAA}, {RBAC}}} AND @Request[{ATTR}:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase "
    f"{{'ServicePrincipal'}})) AND ((!(ActionMatches{{'{D}'}})) OR (@Resource[{ATTR}:RoleDefinitionId] "
    f"ForAnyOfAllValues:GuidNotEquals {{{OWNER}, {UAA}, {RBAC}}} AND @Resource[{ATTR}:PrincipalType] "
    f"ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
)


def ctx(resource_map: dict[str, str] | None = None) -> PhaseContext:
    request = MoveRequest.model_validate(
        {"sourceIdentityId": IDENTITY, "targetRegion": "northeurope", "resourceMap": resource_map or {}}
    )
    return PhaseContext(clients=None, settings=Settings(), move_id="m", request=request)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*/read", "Microsoft.Web/sites/read", True),
        ("*/read", "Microsoft.Web/sites/write", False),
        ("*", "Microsoft.Web/sites/write", True),
        ("microsoft.web/SITES/*", "Microsoft.Web/sites/config/list/action", True),
        (f"{permissions.MI}/*/assign/action", f"{permissions.MI}/assign/action", True),  # /*/ matches one /
        ("Microsoft.Authorization/*/Write", W, True),
        ("Microsoft.Web/sites/write", "Microsoft.Web/sites/slots/write", False),
    ],
)
def test_actions_match_as_arm_matches_them(pattern: str, action: str, expected: bool) -> None:
    assert preflight.matches(pattern, action) is expected


def test_not_actions_take_away_only_within_their_own_entry() -> None:
    contributor = {
        "actions": ["*"],
        "notActions": ["Microsoft.Authorization/*/Write", "Microsoft.Authorization/*/Delete"],
    }
    assert not preflight.holds([contributor], W)
    assert preflight.holds([contributor], "Microsoft.Web/sites/write")
    rbac_admin = {"actions": [W, D, "*/read"], "notActions": []}
    assert preflight.holds([contributor, rbac_admin], W)  # another role grants it back


def test_each_rule_names_the_scopes_the_move_writes() -> None:
    snapshot: dict[str, Any] = {
        "identity": {"id": IDENTITY},
        "subscriptions": [SUB.rsplit("/", 1)[-1]],
        "attachments": [{"id": WEB, "attached": True}],
        "roleAssignments": [{"id": f"{SUB}/providers/x/ra", "scope": SUB, "roleName": "Reader"}],
        "appSettings": [{"site": WEB, "appSettings": ["AZURE_CLIENT_ID"], "connectionStrings": []}],
        "flexibleServerAdmins": [{"server": f"{SUB}/resourceGroups/d/providers/Microsoft.DBforMySQL/flexibleServers/my",
                                  "reportOnly": True}],
    }  # fmt: skip
    target = {"subscriptionId": SUB.rsplit("/", 1)[-1], "resourceGroup": "rg-ne"}
    needs = {(n.scope, n.action) for n in preflight.needs(ctx({WEB: OTHER_WEB}), snapshot, target)}
    assert (SUB, "*/read") in needs
    assert (f"{SUB}/resourceGroups/rg-ne", f"{permissions.MI}/write") in needs
    assert (IDENTITY, f"{permissions.MI}/delete") in needs and (
        IDENTITY,
        f"{permissions.MI}/assign/action",
    ) in needs
    assert (SUB, W) in needs and (SUB, D) in needs
    assert (OTHER_WEB, "Microsoft.Web/sites/write") in needs  # rebind writes the counterpart ...
    assert (WEB, "Microsoft.Web/sites/write") in needs  # ... and cleanup detaches the source
    assert (OTHER_WEB, "Microsoft.Web/sites/config/write") in needs
    assert not any("DBforMySQL" in scope for scope, _ in needs)  # reported only: nothing written


def test_the_infra_condition_refuses_privileged_roles_and_other_principal_types() -> None:
    service_principal = {"PrincipalType": ["ServicePrincipal"]}
    assert allows(INFRA_CONDITION, W, {"RoleDefinitionId": [READER], **service_principal})
    assert allows(INFRA_CONDITION, D, {"RoleDefinitionId": [READER], **service_principal})
    for privileged in (OWNER, UAA, RBAC):
        role = f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{privileged}"
        assert not allows(INFRA_CONDITION, W, {"RoleDefinitionId": [role], **service_principal})
        assert not allows(INFRA_CONDITION, D, {"RoleDefinitionId": [role], **service_principal})
    assert not allows(INFRA_CONDITION, W, {"RoleDefinitionId": [READER], "PrincipalType": ["User"]})
    assert allows(INFRA_CONDITION, "Microsoft.Web/sites/write", {})  # other actions: not constrained


def test_an_allow_list_condition_and_an_unknown_form() -> None:
    only_reader = f"@Request[{ATTR}:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{acdd72a7-3385-48ef-bd42-f606fba81ae7}}"
    assert allows(only_reader, W, {"RoleDefinitionId": [READER]})
    assert not allows(only_reader, W, {"RoleDefinitionId": [OWNER]})
    with pytest.raises(Unreadable):
        allows("@Principal[Microsoft.Directory/CustomSecurityAttributes/Id:x] StringEquals 'y'", W, {})


def test_a_refused_read_names_the_action_and_the_scope() -> None:
    message = (
        "The client 'a' with object id 'a' does not have authorization to perform action "
        f"'Microsoft.Web/sites/config/list/action' over scope '{WEB}' or the scope is invalid. If access ..."
    )
    blocked = preflight.refused_read(PermanentError("AuthorizationFailed", message, IDENTITY))
    assert blocked is not None and blocked["code"] == "MissingPermission" and blocked["target"] == WEB
    assert "'Microsoft.Web/sites/config/list/action' over" in blocked["message"]
    graph = preflight.refused_read(
        PermanentError("Authorization_RequestDenied", "Insufficient privileges", None)
    )
    assert graph is not None and "Application.Read.All" in graph["message"]
    assert preflight.refused_read(PermanentError("ResourceNotFound", "gone", WEB)) is None


def test_a_subscription_whose_permissions_cannot_be_read_is_asked_once_per_plan() -> None:
    """``held_above`` on a subscription whose answer is refused: asked once, then each scope is read
    on its own as before, not the subscription again for every scope and action."""
    from azure.core.exceptions import HttpResponseError

    from activities.preflight import Rights

    rights = Rights.__new__(Rights)
    rights._entries, rights._kept, rights._unreadable = {}, set(), set()
    asked: list[str] = []

    def refused(scope: str, fresh: bool) -> None:
        asked.append(scope)
        raise HttpResponseError(message="AuthorizationFailed")

    rights._remembered = refused  # type: ignore[method-assign]
    sub = "/subscriptions/11111111-2222-3333-4444-555555555555"
    for scope in (f"{sub}/resourceGroups/a", f"{sub}/resourceGroups/b"):
        for action in ("Microsoft.Web/sites/write", "Microsoft.Web/sites/read"):
            assert rights.held_above(scope, action) is False
    assert asked == [sub]
