"""ARM behaviour: auth, api-version, case-insensitive paths, resource groups, generic resources and
the identity block every resource carries (FACTS.md "Azure Resource Manager")."""

from __future__ import annotations

import httpx

from tests.plugins.emulator import (
    ARM_API,
    SUBSCRIPTION,
    configure,
    identity_path,
    put_group,
    put_identity,
    rg_path,
)

WEB = "2023-01-01"


def site_path(group: str, name: str) -> str:
    return f"{rg_path(group)}/providers/Microsoft.Web/sites/{name}"


def ua(*ids: str, type_: str = "UserAssigned") -> dict[str, object]:
    return {"type": type_, "userAssignedIdentities": {i: {} for i in ids}}


def test_arm_requires_a_bearer_token(emulator_url: str) -> None:
    r = httpx.get(f"{emulator_url}/subscriptions/{SUBSCRIPTION}/resourcegroups", params=ARM_API)
    assert r.status_code == 401
    # ARM's words for a request without the header, and for one whose token is not a bearer token
    assert r.json()["error"] == {
        "code": "AuthenticationFailed",
        "message": "Authentication failed. The 'Authorization' header is missing.",
    }
    assert "WWW-Authenticate" in r.headers
    r = httpx.get(
        f"{emulator_url}/subscriptions/{SUBSCRIPTION}/resourcegroups",
        params=ARM_API,
        headers={"Authorization": "Basic dXNlcjpwdw=="},
    )
    assert r.status_code == 401
    assert r.json()["error"] == {
        "code": "InvalidAuthenticationToken",
        "message": "The access token is invalid.",
    }


def test_api_version_is_required(emulator_arm: httpx.Client) -> None:
    r = emulator_arm.get(f"/subscriptions/{SUBSCRIPTION}/resourcegroups")
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "MissingApiVersionParameter",
        "message": "The api-version query parameter (?api-version=) is required for all requests.",
    }
    r = emulator_arm.get(identity_path("rg", "x"), params={"api-version": "1999-01-01"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "NoRegisteredProviderFound"
    assert "The supported api-versions are '" in r.json()["error"]["message"]
    assert "2024-11-30" in r.json()["error"]["message"]
    r = emulator_arm.get(f"/subscriptions/{SUBSCRIPTION}/resourcegroups", params={"api-version": "latest"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidApiVersionParameter"
    assert r.json()["error"]["message"].startswith(
        "The api-version 'latest' is invalid. The supported versions are '"
    )


def test_not_found_messages_are_worded_like_arm(emulator_arm: httpx.Client) -> None:
    missing_group = emulator_arm.get(rg_path("nope"), params=ARM_API)
    assert missing_group.status_code == 404
    assert missing_group.json()["error"] == {
        "code": "ResourceGroupNotFound",
        "message": "Resource group 'nope' could not be found.",
    }
    put_group(emulator_arm, "rg1")
    link = "For more details please go to https://aka.ms/ARMResourceNotFoundFix"
    ident = emulator_arm.get(identity_path("rg1", "x"), params={"api-version": "2024-11-30"})
    assert ident.status_code == 404 and ident.json()["error"] == {
        "code": "ResourceNotFound",
        "message": f"The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/x' under resource group 'rg1' was not found. {link}",
    }
    nested = emulator_arm.get(
        f"{rg_path('rg1')}/providers/Microsoft.Compute/virtualMachines/vm1",
        params={"api-version": "2024-11-01"},
    )
    assert nested.json()["error"]["message"] == (
        f"The Resource 'Microsoft.Compute/virtualMachines/vm1' under resource group 'rg1' was not found. {link}"
    )
    put_identity(emulator_arm, "rg1", "id1")
    fic = emulator_arm.get(
        f"{identity_path('rg1', 'id1')}/federatedIdentityCredentials/f1", params={"api-version": "2024-11-30"}
    )
    assert fic.status_code == 404 and fic.json()["error"]["message"] == (
        "The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/id1/federatedIdentityCredentials/f1' "
        f"under resource group 'rg1' was not found. {link}"
    )


def test_every_arm_answer_carries_request_ids_and_remaining_budget(emulator_arm: httpx.Client) -> None:
    r = emulator_arm.get(f"/subscriptions/{SUBSCRIPTION}/resourcegroups", params=ARM_API)
    assert r.headers["x-ms-request-id"] and r.headers["x-ms-correlation-request-id"]
    assert int(r.headers["x-ms-ratelimit-remaining-subscription-reads"]) > 0
    w = emulator_arm.put(rg_path("rg1"), params=ARM_API, json={"location": "westeurope"})
    assert "x-ms-ratelimit-remaining-subscription-writes" in w.headers


def test_paths_match_case_insensitively(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "MyGroup")
    put_identity(emulator_arm, "MyGroup", "id1")
    r = emulator_arm.get(
        f"/SUBSCRIPTIONS/{SUBSCRIPTION}/resourcegroups/mygroup/PROVIDERS/microsoft.managedidentity/USERASSIGNEDIDENTITIES/ID1",
        params={"api-version": "2024-11-30"},
    )
    assert r.status_code == 200
    assert r.json()["name"] == "id1"


def test_resource_group_lifecycle(emulator_arm: httpx.Client) -> None:
    r = emulator_arm.put(rg_path("rg1"), params=ARM_API, json={"location": "West Europe", "tags": {"a": "b"}})
    assert r.status_code == 201
    assert r.json()["location"] == "westeurope" and r.json()["type"] == "Microsoft.Resources/resourceGroups"
    assert (
        emulator_arm.put(rg_path("RG1"), params=ARM_API, json={"location": "westeurope"}).status_code == 200
    )
    moved = emulator_arm.put(rg_path("rg1"), params=ARM_API, json={"location": "eastus"})
    assert moved.status_code == 409 and moved.json()["error"]["code"] == "InvalidResourceGroupLocation"
    assert emulator_arm.head(rg_path("rg1"), params=ARM_API).status_code == 204
    assert emulator_arm.head(rg_path("nope"), params=ARM_API).status_code == 404
    missing = emulator_arm.get(rg_path("nope"), params=ARM_API)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceGroupNotFound"
    assert (
        emulator_arm.put(rg_path("rg1"), params=ARM_API, json={}).json()["error"]["code"]
        == "LocationRequired"
    )


def test_deleting_a_group_removes_what_it_holds(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    emulator_arm.put(site_path("rg1", "app"), params={"api-version": WEB}, json={"location": "westeurope"})
    r = emulator_arm.delete(rg_path("rg1"), params=ARM_API)
    assert r.status_code == 202 and r.headers["Location"] and r.headers["Retry-After"]
    assert emulator_arm.get(r.headers["Location"]).status_code == 200
    assert emulator_arm.get(rg_path("rg1"), params=ARM_API).status_code == 404
    assert (
        emulator_arm.get(f"/graph/v1.0/servicePrincipals/{ident['properties']['principalId']}").status_code
        == 404
    )
    assert emulator_arm.get(f"/subscriptions/{SUBSCRIPTION}/resources", params=ARM_API).json()["value"] == []


def test_generic_resource_crud(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    body = {
        "location": "westeurope",
        "tags": {"env": "dev"},
        "kind": "app",
        "properties": {"siteConfig": {"alwaysOn": True}},
    }
    created = emulator_arm.put(site_path("rg1", "app"), params={"api-version": WEB}, json=body)
    assert created.status_code == 201
    assert created.json()["properties"]["siteConfig"] == {"alwaysOn": True}
    assert (
        emulator_arm.put(site_path("rg1", "app"), params={"api-version": WEB}, json=body).status_code == 200
    )
    patched = emulator_arm.patch(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"properties": {"siteConfig": {"http20Enabled": True}}},
    )
    assert patched.json()["properties"]["siteConfig"] == {"alwaysOn": True, "http20Enabled": True}
    assert emulator_arm.get(site_path("rg1", "APP"), params={"api-version": WEB}).json()["kind"] == "app"
    assert emulator_arm.delete(site_path("rg1", "app"), params={"api-version": WEB}).status_code == 200
    assert emulator_arm.delete(site_path("rg1", "app"), params={"api-version": WEB}).status_code == 204
    gone = emulator_arm.get(site_path("rg1", "app"), params={"api-version": WEB})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ResourceNotFound"


def test_resource_put_needs_location_and_group(emulator_arm: httpx.Client) -> None:
    assert (
        emulator_arm.put(
            site_path("nope", "app"), params={"api-version": WEB}, json={"location": "westeurope"}
        ).json()["error"]["code"]
        == "ResourceGroupNotFound"
    )
    put_group(emulator_arm, "rg1")
    r = emulator_arm.put(site_path("rg1", "app"), params={"api-version": WEB}, json={"properties": {}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "LocationRequired"
    r = emulator_arm.put(
        f"{site_path('rg1', 'app')}/slots/staging",
        params={"api-version": WEB},
        json={"location": "westeurope"},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "ParentResourceNotFound"


def test_resource_lists_filter_and_page(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    put_group(emulator_arm, "rg2")
    for i in range(5):
        emulator_arm.put(
            site_path("rg1", f"app{i}"),
            params={"api-version": WEB},
            json={"location": "westeurope", "properties": {"x": i}},
        )
    emulator_arm.put(
        f"{rg_path('rg2')}/providers/Microsoft.Storage/storageAccounts/st1",
        params={"api-version": WEB},
        json={"location": "westeurope"},
    )
    configure(emulator_arm, pageSize=2)
    url: str | None = (
        f"/subscriptions/{SUBSCRIPTION}/resources?api-version=2021-04-01&$filter=resourceType eq 'Microsoft.Web/sites'"
    )
    names: list[str] = []
    pages = 0
    while url:
        page = emulator_arm.get(url).json()
        names += [r["name"] for r in page["value"]]
        assert all("properties" not in r for r in page["value"])  # ARM lists omit properties
        url = page.get("nextLink")
        pages += 1
    assert names == [f"app{i}" for i in range(5)] and pages == 3
    in_rg2 = emulator_arm.get(f"{rg_path('rg2')}/resources", params=ARM_API).json()["value"]
    assert [r["type"] for r in in_rg2] == ["Microsoft.Storage/storageAccounts"]
    collection = emulator_arm.get(
        f"{rg_path('rg1')}/providers/Microsoft.Web/sites", params={"api-version": WEB, "$top": "10"}
    ).json()
    assert len(collection["value"]) == 5 and collection["value"][0]["properties"]["x"] == 0


def test_identity_block_fills_principal_and_client_ids(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    r = emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": ua(ident["id"])},
    )
    assert r.status_code == 201
    entry = r.json()["identity"]["userAssignedIdentities"][ident["id"]]
    assert entry == {
        "principalId": ident["properties"]["principalId"],
        "clientId": ident["properties"]["clientId"],
    }


def test_identity_block_rejects_a_missing_identity(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    r = emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": ua(identity_path("rg1", "ghost"))},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "FailedIdentityOperation"
    # the wrapper resource providers relay from the identity service (public terraform/Azure Policy threads)
    ghost, app = identity_path("rg1", "ghost"), site_path("rg1", "app")
    assert r.json()["error"]["message"] == (
        f"Identity operation for resource '{app}' failed with error 'Failed to perform resource identity "
        "operation. Status: 'BadRequest'. Response: "
        f'\'{{"error":{{"code":"BadRequest","message":"Resource \'{ghost}\' was not found."}}}}\'.\'.'
    )
    r = emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={
            "location": "westeurope",
            "identity": {"type": "SystemAssigned", "userAssignedIdentities": {ghost: {}}},
        },
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "FailedIdentityOperation"
    assert (
        "a non-UserAssigned identity type should not contain: userAssignedIdentities"
        in r.json()["error"]["message"]
    )
    r = emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": {"type": "UserAssigned"}},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidIdentity"
    r = emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": {"type": "Magic"}},
    )
    assert r.status_code == 400


def test_system_assigned_principal_is_stable_across_updates(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    first = emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": {"type": "SystemAssigned"}},
    ).json()
    principal = first["identity"]["principalId"]
    assert first["identity"]["tenantId"]
    again = emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": ua(ident["id"], type_="SystemAssigned,UserAssigned")},
    ).json()
    assert again["identity"]["principalId"] == principal
    patched = emulator_arm.patch(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"identity": {"userAssignedIdentities": {ident["id"]: None}}},
    ).json()
    assert patched["identity"] == {
        "type": "SystemAssigned",
        "principalId": principal,
        "tenantId": first["identity"]["tenantId"],
    }
    sp = emulator_arm.get(f"/graph/v1.0/servicePrincipals/{principal}").json()
    assert (
        sp["servicePrincipalType"] == "ManagedIdentity" and site_path("rg1", "app") in sp["alternativeNames"]
    )
    default = emulator_arm.get(
        f"{site_path('rg1', 'app')}/providers/Microsoft.ManagedIdentity/identities/default",
        params={"api-version": "2024-11-30"},
    )
    assert default.json()["properties"]["principalId"] == principal
    off = emulator_arm.patch(
        site_path("rg1", "app"), params={"api-version": WEB}, json={"identity": {"type": "None"}}
    ).json()
    assert off["identity"] == {"type": "None"}
    assert emulator_arm.get(f"/graph/v1.0/servicePrincipals/{principal}").status_code == 404


def test_patch_null_entry_removes_that_identity_only(emulator_arm: httpx.Client) -> None:
    a = put_identity(emulator_arm, "rg1", "ida")
    b = put_identity(emulator_arm, "rg1", "idb")
    emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": ua(a["id"], b["id"])},
    )
    r = emulator_arm.patch(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"identity": {"type": "UserAssigned", "userAssignedIdentities": {a["id"].upper(): None}}},
    )
    assert list(r.json()["identity"]["userAssignedIdentities"]) == [b["id"]]
    r = emulator_arm.patch(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"identity": {"userAssignedIdentities": {b["id"]: None}}},
    )
    assert r.json()["identity"] == {"type": "None"}
    r = emulator_arm.patch(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"identity": {"type": "UserAssigned", "userAssignedIdentities": {a["id"]: {}}}},
    )
    assert list(r.json()["identity"]["userAssignedIdentities"]) == [a["id"]]


def test_regional_identity_only_attaches_in_its_region(emulator_arm: httpx.Client) -> None:
    regional = put_identity(emulator_arm, "rg1", "reg", location="westeurope", isolationScope="Regional")
    put_group(emulator_arm, "rg2", "eastus")
    r = emulator_arm.put(
        f"{rg_path('rg2')}/providers/Microsoft.Web/sites/far",
        params={"api-version": WEB},
        json={"location": "eastus", "identity": ua(regional["id"])},
    )
    assert r.status_code == 400
    assert (
        r.json()["error"]["code"] == "FailedIdentityOperation" and "Regional" in r.json()["error"]["message"]
    )
    assert r.json()["error"]["message"].startswith(
        f"Identity operation for resource '{rg_path('rg2')}/providers/Microsoft.Web/sites/far' failed with error"
    )
    near = emulator_arm.put(
        site_path("rg1", "near"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": ua(regional["id"])},
    )
    assert near.status_code == 201


def test_assignment_restrictions_limit_resource_types(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    ident = emulator_arm.put(
        identity_path("rg1", "restricted"),
        params={"api-version": "2026-05-31"},
        json={
            "location": "westeurope",
            "properties": {"assignmentRestrictions": {"providers": ["Microsoft.Compute"]}},
        },
    ).json()
    r = emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": ua(ident["id"])},
    )
    assert r.status_code == 400
    vm = emulator_arm.put(
        f"{rg_path('rg1')}/providers/Microsoft.Compute/virtualMachines/vm1",
        params={"api-version": "2024-11-01"},
        json={"location": "westeurope", "identity": ua(ident["id"])},
    )
    assert vm.status_code == 201


def test_some_types_refuse_patch_and_take_put(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    path = f"{rg_path('rg1')}/providers/Microsoft.ContainerInstance/containerGroups/cg"
    emulator_arm.put(
        path,
        params={"api-version": "2023-05-01"},
        json={"location": "westeurope", "properties": {"osType": "Linux"}},
    )
    r = emulator_arm.patch(path, params={"api-version": "2023-05-01"}, json={"identity": ua(ident["id"])})
    assert r.status_code == 405 and r.json()["error"]["code"] == "MethodNotAllowed"
    current = emulator_arm.get(path, params={"api-version": "2023-05-01"}).json()
    current["identity"] = ua(ident["id"])
    assert emulator_arm.put(path, params={"api-version": "2023-05-01"}, json=current).status_code == 200
    configure(emulator_arm, patchUnsupportedTypes=[])
    assert (
        emulator_arm.patch(path, params={"api-version": "2023-05-01"}, json={"tags": {"a": "b"}}).status_code
        == 200
    )


def test_deleting_an_identity_leaves_references_in_place(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": ua(ident["id"])},
    )
    assert (
        emulator_arm.delete(identity_path("rg1", "id1"), params={"api-version": "2024-11-30"}).status_code
        == 200
    )
    site = emulator_arm.get(site_path("rg1", "app"), params={"api-version": WEB}).json()
    assert (
        site["identity"]["userAssignedIdentities"][ident["id"]]["principalId"]
        == ident["properties"]["principalId"]
    )
    # re-PUT keeps the stale entry as the RP recorded it; adding the missing identity anew fails
    again = emulator_arm.put(
        site_path("rg1", "app"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": ua(ident["id"])},
    )
    assert again.status_code == 200
    fresh = emulator_arm.put(
        site_path("rg1", "app2"),
        params={"api-version": WEB},
        json={"location": "westeurope", "identity": ua(ident["id"])},
    )
    assert fresh.status_code == 400


def test_location_change_of_existing_resource_is_refused(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    emulator_arm.put(site_path("rg1", "app"), params={"api-version": WEB}, json={"location": "westeurope"})
    r = emulator_arm.put(site_path("rg1", "app"), params={"api-version": WEB}, json={"location": "eastus"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidResourceLocation"
    assert (
        emulator_arm.put(
            site_path("rg1", "x"), params={"api-version": WEB}, json={"location": "atlantis"}
        ).json()["error"]["code"]
        == "LocationNotAvailableForResourceType"
    )


def test_subscription_and_locations(emulator_arm: httpx.Client) -> None:
    sub = emulator_arm.get(f"/subscriptions/{SUBSCRIPTION}", params=ARM_API).json()
    assert sub["subscriptionId"] == SUBSCRIPTION and sub["state"] == "Enabled" and sub["tenantId"]
    regions = emulator_arm.get(
        f"/subscriptions/{SUBSCRIPTION}/locations", params={"api-version": "2022-12-01"}
    ).json()["value"]
    assert len(regions) >= 40
    west = next(r for r in regions if r["name"] == "westeurope")
    assert (
        west["displayName"] == "West Europe" and west["metadata"]["pairedRegion"][0]["name"] == "northeurope"
    )
    listed = emulator_arm.get("/subscriptions", params=ARM_API).json()["value"]
    assert [s["subscriptionId"] for s in listed] == [SUBSCRIPTION]


def test_unknown_routes_are_404_with_a_code(emulator_arm: httpx.Client) -> None:
    r = emulator_arm.get("/nothing/here", params=ARM_API)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
    r = emulator_arm.get(
        f"{rg_path('rg1')}/providers/Microsoft.ManagedIdentity/widgets/x",
        params={"api-version": "2024-11-30"},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "InvalidResourceType"
