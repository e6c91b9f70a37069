"""Microsoft Graph v1.0: service principals, groups, memberships, app role assignments
(FACTS.md "Microsoft Graph")."""

from __future__ import annotations

import uuid

import httpx

from tests.plugins.emulator import configure, put_identity

G = "/graph/v1.0"
GRAPH_APP = "00000003-0000-0000-c000-000000000000"
USER_READ_ALL = "df021288-bdef-4463-88db-98f22de89214"


def new_group(client: httpx.Client, name: str) -> dict[str, object]:
    r = client.post(
        f"{G}/groups",
        json={"displayName": name, "mailEnabled": False, "mailNickname": name, "securityEnabled": True},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def ref(object_id: str) -> dict[str, str]:
    return {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{object_id}"}


def test_graph_needs_a_bearer_token(emulator_url: str) -> None:
    r = httpx.get(f"{emulator_url}{G}/servicePrincipals")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "InvalidAuthenticationToken" and "innerError" in r.json()["error"]


def test_service_principal_lookup_and_filters(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    by_app = emulator_arm.get(
        f"{G}/servicePrincipals", params={"$filter": f"appId eq '{ident['properties']['clientId']}'"}
    ).json()
    assert [s["id"] for s in by_app["value"]] == [ident["properties"]["principalId"]]
    graph = emulator_arm.get(f"{G}/servicePrincipals", params={"$filter": f"appId eq '{GRAPH_APP}'"}).json()[
        "value"
    ][0]
    assert graph["displayName"] == "Microsoft Graph" and any(
        r["value"] == "User.Read.All" for r in graph["appRoles"]
    )
    by_name = emulator_arm.get(f"{G}/servicePrincipals", params={"$filter": "displayName eq 'id1'"}).json()[
        "value"
    ]
    assert len(by_name) == 1
    missing = emulator_arm.get(f"{G}/servicePrincipals/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"


def test_group_membership(emulator_arm: httpx.Client) -> None:
    sp = put_identity(emulator_arm, "rg1", "id1")["properties"]["principalId"]
    groups = [new_group(emulator_arm, f"g{i}") for i in range(3)]
    got = emulator_arm.get(f"{G}/groups/{groups[0]['id']}")
    assert (
        got.status_code == 200 and got.json()["displayName"] == "g0" and got.json()["securityEnabled"] is True
    )
    unknown = emulator_arm.get(f"{G}/groups/{uuid.uuid4()}")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "Request_ResourceNotFound"
    for g in groups:
        assert emulator_arm.post(f"{G}/groups/{g['id']}/members/$ref", json=ref(sp)).status_code == 204
    again = emulator_arm.post(f"{G}/groups/{groups[0]['id']}/members/$ref", json=ref(sp))
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "Request_BadRequest"
    assert again.json()["error"]["message"] == (
        "One or more added object references already exist for the following modified properties: 'members'."
    )
    configure(emulator_arm, pageSize=2)
    page = emulator_arm.get(f"{G}/servicePrincipals/{sp}/memberOf").json()
    assert len(page["value"]) == 2 and page["value"][0]["@odata.type"] == "#microsoft.graph.group"
    rest = emulator_arm.get(page["@odata.nextLink"]).json()
    assert {g["id"] for g in page["value"] + rest["value"]} == {g["id"] for g in groups}
    members = emulator_arm.get(f"{G}/groups/{groups[0]['id']}/members").json()["value"]
    assert [m["id"] for m in members] == [sp]
    assert emulator_arm.delete(f"{G}/groups/{groups[0]['id']}/members/{sp}/$ref").status_code == 204
    assert emulator_arm.delete(f"{G}/groups/{groups[0]['id']}/members/{sp}/$ref").status_code == 404
    assert (
        emulator_arm.post(
            f"{G}/groups/{groups[0]['id']}/members/$ref", json=ref(str(uuid.uuid4()))
        ).status_code
        == 404
    )
    assert emulator_arm.post(f"{G}/groups", json={"displayName": "x"}).status_code == 400


def test_app_role_assignments(emulator_arm: httpx.Client) -> None:
    sp = put_identity(emulator_arm, "rg1", "id1")["properties"]["principalId"]
    graph = emulator_arm.get(f"{G}/servicePrincipals", params={"$filter": f"appId eq '{GRAPH_APP}'"}).json()[
        "value"
    ][0]
    body = {"principalId": sp, "resourceId": graph["id"], "appRoleId": USER_READ_ALL}
    granted = emulator_arm.post(f"{G}/servicePrincipals/{sp}/appRoleAssignments", json=body)
    assert granted.status_code == 201
    assert (
        granted.json()["resourceDisplayName"] == "Microsoft Graph"
        and granted.json()["principalType"] == "ServicePrincipal"
    )
    dup = emulator_arm.post(f"{G}/servicePrincipals/{sp}/appRoleAssignments", json=body)
    assert dup.status_code == 400
    wrong_role = emulator_arm.post(
        f"{G}/servicePrincipals/{sp}/appRoleAssignments", json={**body, "appRoleId": str(uuid.uuid4())}
    )
    assert wrong_role.status_code == 400
    listed = emulator_arm.get(f"{G}/servicePrincipals/{sp}/appRoleAssignments").json()["value"]
    assert [a["appRoleId"] for a in listed] == [USER_READ_ALL]
    assert (
        emulator_arm.delete(f"{G}/servicePrincipals/{sp}/appRoleAssignments/{listed[0]['id']}").status_code
        == 204
    )
    assert emulator_arm.get(f"{G}/servicePrincipals/{sp}/appRoleAssignments").json()["value"] == []


def test_custom_resource_service_principal_with_app_roles(emulator_arm: httpx.Client) -> None:
    role = str(uuid.uuid4())
    api = emulator_arm.post(
        f"{G}/servicePrincipals",
        json={
            "appId": str(uuid.uuid4()),
            "displayName": "Orders API",
            "appRoles": [{"id": role, "value": "Orders.Read", "displayName": "Read orders"}],
        },
    )
    assert api.status_code == 201
    sp = put_identity(emulator_arm, "rg1", "id1")["properties"]["principalId"]
    r = emulator_arm.post(
        f"{G}/servicePrincipals/{sp}/appRoleAssignments",
        json={"principalId": sp, "resourceId": api.json()["id"], "appRoleId": role},
    )
    assert r.status_code == 201


def test_deleting_the_identity_drops_memberships_and_grants(emulator_arm: httpx.Client) -> None:
    sp = put_identity(emulator_arm, "rg1", "id1")["properties"]["principalId"]
    g = new_group(emulator_arm, "g")
    emulator_arm.post(f"{G}/groups/{g['id']}/members/$ref", json=ref(sp))
    emulator_arm.delete(
        "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1",
        params={"api-version": "2024-11-30"},
    )
    assert emulator_arm.get(f"{G}/groups/{g['id']}/members").json()["value"] == []
    assert emulator_arm.get(f"{G}/servicePrincipals/{sp}/memberOf").status_code == 404


def test_graph_404_while_replicating_then_visible(emulator_arm: httpx.Client) -> None:
    configure(emulator_arm, replicationDelaySeconds=30)
    sp = put_identity(emulator_arm, "rg1", "id1")["properties"]["principalId"]
    assert emulator_arm.get(f"{G}/servicePrincipals/{sp}").status_code == 404
    assert emulator_arm.get(f"{G}/servicePrincipals/{sp}/memberOf").status_code == 404
    g = new_group(emulator_arm, "g")
    assert emulator_arm.post(f"{G}/groups/{g['id']}/members/$ref", json=ref(sp)).status_code == 404
