"""ARM request routing: which handler serves a path. Segments are matched case-insensitively, as ARM does.

Route table (``{scope}`` = tenant root, management group, subscription, resource group or resource):
- ``{scope}/providers/Microsoft.Authorization/roleAssignments[/{name}]``, ``.../roleDefinitions[/{id}]``
  and ``.../permissions`` (scopes inside a subscription)
- ``{resource}/providers/Microsoft.ManagedIdentity/identities/default``
- ``/providers/Microsoft.ResourceGraph/resources``
- ``/providers/Microsoft.Management/managementGroups/{mg}[/subscriptions/{s}]``,
  ``/providers/Microsoft.Management/operationResults/create/managementGroups/{mg}``
- ``/subscriptions[/{s}[/locations|/resources|/resourcegroups[/{rg}[/resources]]|/operationresults/{t}]]``
- ``/subscriptions/{s}/providers/{ns}[/{type}]`` (provider, per-subscription collection)
- ``/subscriptions/{s}/resourcegroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/...``
- ``/subscriptions/{s}/resourcegroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}...]`` (any type)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

from emulator import arm_resources, authorization, management_groups, msi, resourcegraph, services
from emulator.errors import ArmError
from emulator.ids import parse_resource_id
from emulator.state import State
from emulator.wire import Request, Response

_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-(preview|beta|alpha|privatepreview))?$", re.IGNORECASE)
MSI_NS = "microsoft.managedidentity"


def _method_not_allowed(req: Request) -> ArmError:
    return ArmError(
        405, "MethodNotAllowed", f"The requested resource does not support http method '{req.method}'."
    )


def check_generic_api_version(req: Request) -> None:
    version = req.query.get("api-version", "")
    if not _API_VERSION.match(version):
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are '2025-04-01,2024-11-01,2024-03-01,2022-09-01,2021-04-01'.",
        )


def _pick(req: Request, handlers: dict[str, Callable[[], Response]]) -> Response:
    handler = handlers.get(req.method)
    if handler is None:
        raise _method_not_allowed(req)
    return handler()


def route(state: State, req: Request) -> Response:
    segs = [unquote(s) for s in req.path.strip("/").split("/")] if req.path.strip("/") else []
    low = [s.lower() for s in segs]
    n = len(segs)

    # Microsoft.Authorization at any scope (the last provider segment decides)
    auth_at = next(
        (
            i
            for i in range(n - 2, -1, -1)
            if low[i] == "providers" and low[i + 1] == "microsoft.authorization"
        ),
        None,
    )
    if auth_at is not None:
        scope = "/" + "/".join(segs[:auth_at])
        rest, rest_low = segs[auth_at + 2 :], low[auth_at + 2 :]
        if rest_low[:1] == ["roleassignments"] and len(rest) in (1, 2):
            if len(rest) == 1:
                return _pick(req, {"GET": lambda: authorization.list_assignments(state, req, scope)})
            name = rest[1]
            return _pick(
                req,
                {
                    "GET": lambda: authorization.get_assignment(state, req, scope, name),
                    "PUT": lambda: authorization.put_assignment(state, req, scope, name),
                    "DELETE": lambda: authorization.delete_assignment(state, req, scope, name),
                },
            )
        if rest_low[:1] == ["roledefinitions"] and len(rest) in (1, 2):
            if len(rest) == 1:
                return _pick(req, {"GET": lambda: authorization.list_definitions(state, req, scope)})
            guid = rest[1]
            return _pick(
                req,
                {
                    "GET": lambda: authorization.get_definition(state, req, scope, guid),
                    "PUT": lambda: authorization.put_definition(state, req, scope, guid),
                    "DELETE": lambda: authorization.delete_definition(state, req, scope, guid),
                },
            )
        if rest_low == ["permissions"] and scope.lower().startswith("/subscriptions/"):
            return _pick(req, {"GET": lambda: authorization.list_permissions(state, req, scope)})
        raise _unknown_type(req, "Microsoft.Authorization", rest[0] if rest else "")

    if n >= 4 and low[-4:] == ["providers", MSI_NS, "identities", "default"]:
        scope = "/" + "/".join(segs[:-4])
        return _pick(req, {"GET": lambda: msi.get_system_assigned(state, req, scope)})

    if low == ["providers", "microsoft.resourcegraph", "resources"]:
        return _pick(req, {"POST": lambda: resourcegraph.query(state, req)})

    if (
        low[:5] == ["providers", "microsoft.management", "operationresults", "create", "managementgroups"]
        and n == 6
    ):
        return _pick(req, {"GET": lambda: management_groups.get_operation(state, req, segs[5])})

    if low[:3] == ["providers", "microsoft.management", "managementgroups"] and n >= 4:
        mg = segs[3]
        if n == 4:
            return _pick(
                req,
                {
                    "PUT": lambda: management_groups.put_group(state, req, mg),
                    "GET": lambda: management_groups.get_group(state, req, mg),
                    "DELETE": lambda: management_groups.delete_group(state, req, mg),
                },
            )
        if n == 6 and low[4] == "subscriptions":
            sub = segs[5]
            return _pick(
                req,
                {
                    "PUT": lambda: management_groups.put_subscription(state, req, mg, sub),
                    "DELETE": lambda: management_groups.delete_subscription(state, req, mg, sub),
                },
            )

    if low[:1] == ["subscriptions"]:
        # Key Vault policies, Cosmos DB RBAC, database administrators, app settings, async operations
        special = services.route(state, req, segs, low)
        if special is not None:
            return special
        return _route_subscription(state, req, segs, low)
    raise ArmError(404, "NotFound", f"The requested path '{req.path}' was not found.")


def _unknown_type(req: Request, namespace: str, resource_type: str) -> ArmError:
    return ArmError(
        404,
        "InvalidResourceType",
        f"The resource type '{resource_type}' could not be found in the namespace '{namespace}' for api version "
        f"'{req.query.get('api-version', '')}'.",
    )


def _route_subscription(state: State, req: Request, segs: list[str], low: list[str]) -> Response:
    n = len(segs)
    if n == 1:
        check_generic_api_version(req)
        return _pick(req, {"GET": lambda: arm_resources.list_subscriptions(state, req)})
    sub = segs[1]
    if n == 2:
        check_generic_api_version(req)
        return _pick(req, {"GET": lambda: arm_resources.get_subscription(state, req, sub)})
    if n == 3 and low[2] == "locations":
        return _pick(req, {"GET": lambda: arm_resources.list_locations(state, req, sub)})
    if n == 3 and low[2] == "resources":
        check_generic_api_version(req)
        return _pick(req, {"GET": lambda: arm_resources.list_resources(state, req, sub, None)})
    if n == 3 and low[2] == "resourcegroups":
        check_generic_api_version(req)
        return _pick(req, {"GET": lambda: arm_resources.list_groups(state, req, sub)})
    if n == 4 and low[2] == "operationresults":
        token = segs[3]
        return _pick(req, {"GET": lambda: arm_resources.operation_result(state, req, sub, token)})
    if n == 4 and low[2] == "resourcegroups":
        check_generic_api_version(req)
        group = segs[3]
        return _pick(
            req,
            {
                "PUT": lambda: arm_resources.put_group(state, req, sub, group),
                "GET": lambda: arm_resources.get_group(state, req, sub, group),
                "HEAD": lambda: arm_resources.head_group(state, req, sub, group),
                "PATCH": lambda: arm_resources.patch_group(state, req, sub, group),
                "DELETE": lambda: arm_resources.delete_group(state, req, sub, group),
            },
        )
    if n == 5 and low[2] == "resourcegroups" and low[4] == "resources":
        check_generic_api_version(req)
        group = segs[3]
        return _pick(req, {"GET": lambda: arm_resources.list_resources(state, req, sub, group)})
    if n == 4 and low[2] == "providers":
        check_generic_api_version(req)
        return _pick(req, {"GET": lambda: arm_resources.get_provider(state, req, sub, segs[3])})
    if n == 5 and low[2] == "providers":
        if low[3] == MSI_NS:
            if low[4] == "userassignedidentities":
                return _pick(req, {"GET": lambda: msi.list_identities(state, req, sub, None)})
            raise _unknown_type(req, segs[3], segs[4])
        check_generic_api_version(req)
        path = "/" + "/".join(segs)
        rtype = f"{segs[3]}/{segs[4]}"
        return _pick(req, {"GET": lambda: arm_resources.list_collection(state, req, path, rtype, sub, None)})
    if n >= 7 and low[2] == "resourcegroups" and low[4] == "providers":
        group = segs[3]
        if low[5] == MSI_NS:
            return _route_msi(state, req, sub, group, segs[6:], low[6:])
        check_generic_api_version(req)
        rest = segs[6:]
        if len(rest) % 2 == 1:
            path = "/" + "/".join(segs)
            rtype = "/".join([segs[5], *rest[0::2]])
            if len(rest) > 1:
                parent = parse_resource_id("/" + "/".join(segs[:-1]))
                if parent is None or parent.type.lower() == "":
                    raise ArmError(404, "NotFound", f"The requested path '{req.path}' was not found.")
            return _pick(
                req, {"GET": lambda: arm_resources.list_collection(state, req, path, rtype, sub, group)}
            )
        rid = parse_resource_id("/" + "/".join(segs))
        if rid is None:
            raise ArmError(404, "NotFound", f"The requested path '{req.path}' was not found.")
        return _pick(
            req,
            {
                "PUT": lambda: arm_resources.put_resource(state, req, rid),
                "GET": lambda: arm_resources.get_resource(state, req, rid),
                "PATCH": lambda: arm_resources.patch_resource(state, req, rid),
                "DELETE": lambda: arm_resources.delete_resource(state, req, rid),
            },
        )
    raise ArmError(404, "NotFound", f"The requested path '{req.path}' was not found.")


def _route_msi(state: State, req: Request, sub: str, group: str, rest: list[str], low: list[str]) -> Response:
    if not low or low[0] != "userassignedidentities":
        raise _unknown_type(req, "Microsoft.ManagedIdentity", rest[0] if rest else "")
    n = len(rest)
    if n == 1:
        return _pick(req, {"GET": lambda: msi.list_identities(state, req, sub, group)})
    name = rest[1]
    if n == 2:
        return _pick(
            req,
            {
                "PUT": lambda: msi.put_identity(state, req, sub, group, name),
                "GET": lambda: msi.get_identity(state, req, sub, group, name),
                "PATCH": lambda: msi.patch_identity(state, req, sub, group, name),
                "DELETE": lambda: msi.delete_identity(state, req, sub, group, name),
            },
        )
    if low[2] != "federatedidentitycredentials" or n > 4:
        raise _unknown_type(req, "Microsoft.ManagedIdentity", "/".join(rest[0::2]))
    if n == 3:
        return _pick(req, {"GET": lambda: msi.list_fics(state, req, sub, group, name)})
    fic = rest[3]
    return _pick(
        req,
        {
            "PUT": lambda: msi.put_fic(state, req, sub, group, name, fic),
            "GET": lambda: msi.get_fic(state, req, sub, group, name, fic),
            "DELETE": lambda: msi.delete_fic(state, req, sub, group, name, fic),
        },
    )
