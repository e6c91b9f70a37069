"""What the mover may do in Azure and Microsoft Graph, and why: the one list (issue 9).

Three things are checked against it, so they cannot drift apart:

* the plan's permission preflight (``activities/preflight.py``) asks ARM's permissions API, per scope
  the move writes, for the actions of that scope's kind, and reads the mover's own Microsoft Graph
  app role assignments for the Graph permissions the move needs;
* the infra (``infra/app/rbac.bicep``): the built-in roles it assigns plus the custom role
  ``Identity Mover rebinder`` whose ``actions`` are exactly :func:`custom_role_actions`, and
  ``infra/scripts/grant-graph-permissions.sh``, which grants exactly :data:`GRAPH_GRANTED`
  (``tests/test_infra_permissions.py``);
* ``idmove permissions [--output json]`` prints it, and the README's "What the app may do" tables are
  generated from it (:func:`markdown`; a test keeps the README equal to it).

Scope kinds (where an action is needed, ``SCOPES``): ``managedScope`` (every subscription or management
group whose identities are moved: the reads), ``targetResourceGroup``, ``sourceIdentity``,
``roleAssignmentScope`` (each scope a copied role assignment lives at, management groups included),
``rebindResource`` (each resource the identity is attached to or named in, and its ``resourceMap``
counterpart; the action is that type's ``write``), ``siteSettings`` (App Service sites and slots),
``keyVault``, ``cosmosAccount``, ``postgresFlexibleServer``.

Example::

    from shared.permissions import ARM, arm_actions_for
    arm_actions_for("keyVault")                 # ["Microsoft.KeyVault/vaults/accessPolicies/write"]
    arm_actions_for("rebindResource", "Microsoft.Web/sites")   # ["Microsoft.Web/sites/write"]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MI = "Microsoft.ManagedIdentity/userAssignedIdentities"
RA = "Microsoft.Authorization/roleAssignments"

# the roles the infra assigns at each managed scope (rbac.bicep); the custom one is defined there. No
# Reader: the RBAC Administrator role already holds */read (its condition covers only role-assignment
# writes and deletes), and a role whose removal leaves nothing unheld is not assigned.
MI_CONTRIBUTOR = "Managed Identity Contributor"
MI_OPERATOR = "Managed Identity Operator"
RBAC_ADMIN = "Role Based Access Control Administrator (conditioned)"
REBINDER = "Identity Mover rebinder"
ROLES = (MI_CONTRIBUTOR, MI_OPERATOR, RBAC_ADMIN, REBINDER)

SCOPES: dict[str, str] = {
    "managedScope": "every subscription (or management group) whose identities are moved",
    "targetResourceGroup": "the target resource group (the new identity is created there)",
    "sourceIdentity": "the source identity",
    "roleAssignmentScope": "each scope a copied role assignment lives at (management groups included)",
    "rebindResource": "each resource that uses the identity, and its resourceMap counterpart",
    "siteSettings": "each App Service site or slot the identity is attached to",
    "keyVault": "each Key Vault whose access policies name the identity",
    "cosmosAccount": "each Cosmos DB account with a data-plane role assignment of the identity",
    "postgresFlexibleServer": "each PostgreSQL flexible server the identity administers",
}

# Resource types whose identity block (and identity references in properties) the mover rewrites, and
# that the custom role may write: those it knows (``shared/azure_clients.KNOWN_API_VERSIONS``) plus slots. Any other type still works when the mover's principal is given its
# write action some other way: the preflight names what is missing.
REBIND_TYPES: tuple[str, ...] = (
    "Microsoft.Web/sites",
    "Microsoft.Web/sites/slots",
    "Microsoft.Compute/virtualMachines",
    "Microsoft.Compute/virtualMachineScaleSets",
    "Microsoft.ContainerInstance/containerGroups",
    "Microsoft.ContainerService/managedClusters",
    "Microsoft.App/containerApps",
    "Microsoft.Storage/storageAccounts",
    "Microsoft.Sql/servers",
    "Microsoft.DocumentDB/databaseAccounts",
    "Microsoft.DBforPostgreSQL/flexibleServers",
    "Microsoft.DBforMySQL/flexibleServers",
)
SITE_TYPES: tuple[str, ...] = ("Microsoft.Web/sites", "Microsoft.Web/sites/slots")


@dataclass(frozen=True)
class ArmNeed:
    """One ARM action the mover needs at one kind of scope. ``{type}`` stands for the resource's type."""

    scope: str
    action: str
    phases: str
    why: str
    role: str  # what grants it in the infra


@dataclass(frozen=True)
class GraphNeed:
    """One Microsoft Graph application permission requirement: any of ``any_of`` satisfies it.
    ``when`` names the snapshot key that makes it needed ("" = every move)."""

    any_of: tuple[str, ...]
    when: str
    phases: str
    why: str


ARM: tuple[ArmNeed, ...] = (
    ArmNeed("managedScope", "*/read", "snapshot, verify",
            "read the identity, the resources using it, role assignments and role definitions, data-plane "
            "grants (Cosmos DB sqlRoleAssignments, flexible-server and SQL administrators); Resource Graph answers "
            "only what the mover may read, so a blanket read is checked", RBAC_ADMIN),
    ArmNeed("targetResourceGroup", f"{MI}/write", "create", "create the new identity", MI_CONTRIBUTOR),
    ArmNeed("targetResourceGroup", f"{MI}/federatedIdentityCredentials/write", "grant",
            "copy the federated credentials to the new identity", MI_CONTRIBUTOR),
    ArmNeed("targetResourceGroup", f"{MI}/assign/action", "rebind",
            "attach the new identity to resources (ARM's linked authorization)", MI_OPERATOR),
    ArmNeed("targetResourceGroup", f"{MI}/delete", "discard", "delete the new identity when a move is discarded",
            MI_CONTRIBUTOR),
    ArmNeed("sourceIdentity", f"{MI}/assign/action", "rebind, cleanup",
            "write an identity block that still names the old identity (GET + PUT where PATCH is refused)",
            MI_OPERATOR),
    ArmNeed("sourceIdentity", f"{MI}/delete", "cleanup", "delete the old identity after commit", MI_CONTRIBUTOR),
    ArmNeed("roleAssignmentScope", f"{RA}/write", "grant",
            "copy the role assignment to the new identity (a service principal; never a privileged role)",
            RBAC_ADMIN),
    ArmNeed("roleAssignmentScope", f"{RA}/delete", "cleanup, discard",
            "delete the old identity's assignment after commit (the new one's on discard)", RBAC_ADMIN),
    ArmNeed("rebindResource", "{type}/write", "rebind, cleanup",
            "attach the new identity, move property references; detach the old identity after commit",
            REBINDER),
    ArmNeed("siteSettings", "{type}/config/list/action", "snapshot, rebind, verify, cleanup, discard",
            "read app settings and connection strings (their values are only listed, never in a GET)", REBINDER),
    ArmNeed("siteSettings", "{type}/config/write", "rebind, discard",
            "rewrite settings naming the old clientId / identity id", REBINDER),
    ArmNeed("keyVault", "Microsoft.KeyVault/vaults/accessPolicies/write", "grant, cleanup",
            "add the new identity's access policy, remove the old one's", REBINDER),
    ArmNeed("cosmosAccount", "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write", "grant",
            "copy Cosmos DB data-plane role assignments", REBINDER),
    ArmNeed("cosmosAccount", "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/delete", "cleanup, discard",
            "delete the old identity's data-plane role assignments", REBINDER),
    ArmNeed("postgresFlexibleServer", "Microsoft.DBforPostgreSQL/flexibleServers/administrators/write", "grant",
            "add the new identity as Entra administrator next to the old one", REBINDER),
    ArmNeed("postgresFlexibleServer", "Microsoft.DBforPostgreSQL/flexibleServers/administrators/delete",
            "cleanup, discard", "remove the old identity as Entra administrator", REBINDER),
)  # fmt: skip

# Microsoft Graph application permission ids (the same in every tenant; Graph permissions reference).
GRAPH_PERMISSION_IDS: dict[str, str] = {
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f",
    "GroupMember.ReadWrite.All": "dbaae8cf-10b5-4b86-a4a1-f871c94c6695",
    "Group.ReadWrite.All": "62a82d76-70ea-41e2-9197-370581804d09",
    "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
    "Directory.ReadWrite.All": "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
}
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph, in every tenant

_SP_READ = (
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
GRAPH: tuple[GraphNeed, ...] = (
    GraphNeed(_SP_READ, "", "snapshot, verify",
              "read service principals: the identity's group memberships (memberOf) and app role assignments"),
    GraphNeed(("GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"), "groups",
              "grant, cleanup", "add the new identity to the same groups, remove the old one"),
    GraphNeed(("Application.ReadWrite.All", "Directory.ReadWrite.All"), "groups", "grant",
              "adding a service principal to a group also needs this (Graph reference, add members: "
              "\"servicePrincipal: GroupMember.ReadWrite.All and Application.ReadWrite.All\")"),
    GraphNeed(("AppRoleAssignment.ReadWrite.All",), "appRoles", "grant, cleanup",
              "grant the same app roles to the new identity, remove the old one's; nothing narrower exists"),
)  # fmt: skip
# What the infra grants: the least-privileged choice that satisfies every need above.
GRAPH_GRANTED: tuple[str, ...] = ("GroupMember.ReadWrite.All", "Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All")  # fmt: skip


def arm_actions_for(scope: str, resource_type: str = "") -> list[str]:
    """The ARM actions needed at one scope kind (``{type}`` filled in with ``resource_type``)."""
    return [n.action.replace("{type}", resource_type) for n in ARM if n.scope == scope]


def custom_role_actions() -> list[str]:
    """The ``actions`` of the infra's custom role: every need it grants, for every supported type."""
    actions: list[str] = []
    for need in ARM:
        if need.role != REBINDER:
            continue
        if "{type}" not in need.action:
            actions.append(need.action)
            continue
        types = SITE_TYPES if need.scope == "siteSettings" else REBIND_TYPES
        actions += [need.action.replace("{type}", t) for t in types]
    return sorted(dict.fromkeys(actions), key=str.lower)


def graph_needed(snapshot: dict[str, Any]) -> list[GraphNeed]:
    """The Graph requirements of one move: those of every move, and those its snapshot makes needed."""
    return [n for n in GRAPH if not n.when or snapshot.get(n.when)]


def graph_satisfied(need: GraphNeed, granted: set[str]) -> bool:
    return any(p.lower() in {g.lower() for g in granted} for p in need.any_of)


def as_json() -> dict[str, Any]:
    """``idmove permissions --output json``."""
    return {
        "scopes": SCOPES,
        "arm": [asdict(n) for n in ARM],
        "rebindTypes": list(REBIND_TYPES),
        "customRole": {"roleName": REBINDER, "actions": custom_role_actions()},
        "graph": [{**asdict(n), "anyOf": list(n.any_of)} for n in GRAPH],
        "graphGranted": list(GRAPH_GRANTED),
    }


def markdown() -> str:
    """The README's tables ("What the app may do"), generated from the list."""
    lines = ["| where | action | phases | why | granted by |", "|---|---|---|---|---|"]
    for n in ARM:
        lines.append(f"| {SCOPES[n.scope]} | `{n.action}` | {n.phases} | {n.why} | {n.role} |")
    lines += ["", "| Microsoft Graph permission (any of) | needed when | phases | why |", "|---|---|---|---|"]
    for g in GRAPH:
        when = {"": "every move", "groups": "the identity is in groups", "appRoles": "it holds app roles"}[
            g.when
        ]
        lines.append(f"| {' / '.join(f'`{p}`' for p in g.any_of)} | {when} | {g.phases} | {g.why} |")
    lines += ["", "`{type}` is the resource's type; the custom role holds it for: "
              + ", ".join(f"`{t}`" for t in REBIND_TYPES) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"
