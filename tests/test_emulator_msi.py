"""Microsoft.ManagedIdentity: identities, federated credentials, their service principals
(FACTS.md "Microsoft.ManagedIdentity"; spec ``ManagedIdentity.json`` 2026-05-31)."""

from __future__ import annotations

import threading

import httpx

from tests.plugins.emulator import MSI_API, SUBSCRIPTION, configure, identity_path, put_group, put_identity
from tests.waiting import wait_until

FIC = {
    "issuer": "https://token.actions.githubusercontent.com",
    "subject": "repo:o/r:ref:refs/heads/main",
    "audiences": ["api://AzureADTokenExchange"],
}


def fic_path(name: str, identity: str = "id1") -> str:
    return f"{identity_path('rg1', identity)}/federatedIdentityCredentials/{name}"


def test_identity_lifecycle(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    created = emulator_arm.put(
        identity_path("rg1", "id1"), params=MSI_API, json={"location": "westeurope", "tags": {"a": "1"}}
    )
    assert created.status_code == 201
    body = created.json()
    assert (
        body["id"]
        == f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
    )
    assert body["properties"]["isolationScope"] == "None"
    again = emulator_arm.put(identity_path("rg1", "id1"), params=MSI_API, json={"location": "westeurope"})
    assert (
        again.status_code == 200
        and again.json()["properties"]["principalId"] == body["properties"]["principalId"]
    )
    patched = emulator_arm.patch(identity_path("rg1", "id1"), params=MSI_API, json={"tags": {"b": "2"}})
    assert patched.status_code == 200 and patched.json()["tags"] == {"b": "2"}
    assert emulator_arm.delete(identity_path("rg1", "id1"), params=MSI_API).status_code == 200
    assert emulator_arm.delete(identity_path("rg1", "id1"), params=MSI_API).status_code == 204
    assert (
        emulator_arm.get(identity_path("rg1", "id1"), params=MSI_API).json()["error"]["code"]
        == "ResourceNotFound"
    )


def test_identity_validation(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    for bad in ("ab", "-lead", "has.dot", "x" * 129):
        r = emulator_arm.put(identity_path("rg1", bad), params=MSI_API, json={"location": "westeurope"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidResourceName", bad
    assert (
        emulator_arm.put(
            identity_path("rg1", "a_b-9"), params=MSI_API, json={"location": "westeurope"}
        ).status_code
        == 201
    )
    assert (
        emulator_arm.put(identity_path("rg1", "id1"), params=MSI_API, json={}).json()["error"]["code"]
        == "LocationRequired"
    )
    assert (
        emulator_arm.put(
            identity_path("nope", "id1"), params=MSI_API, json={"location": "westeurope"}
        ).json()["error"]["code"]
        == "ResourceGroupNotFound"
    )


def test_isolation_scope_depends_on_api_version(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    old = emulator_arm.put(
        identity_path("rg1", "id1"),
        params={"api-version": "2023-01-31"},
        json={"location": "westeurope", "properties": {"isolationScope": "Regional"}},
    )
    assert old.status_code == 400
    emulator_arm.put(
        identity_path("rg1", "id1"),
        params={"api-version": "2024-11-30"},
        json={"location": "westeurope", "properties": {"isolationScope": "Regional"}},
    )
    assert (
        "isolationScope"
        not in emulator_arm.get(identity_path("rg1", "id1"), params={"api-version": "2023-01-31"}).json()[
            "properties"
        ]
    )
    current = emulator_arm.get(identity_path("rg1", "id1"), params={"api-version": "2024-11-30"}).json()[
        "properties"
    ]
    assert current["isolationScope"] == "Regional" and "assignmentRestrictions" not in current
    newest = emulator_arm.get(identity_path("rg1", "id1"), params={"api-version": "2026-05-31"}).json()[
        "properties"
    ]
    assert newest["assignmentRestrictions"] == {"providers": []}
    assert (
        emulator_arm.put(
            identity_path("rg1", "id2"),
            params=MSI_API,
            json={"location": "westeurope", "properties": {"isolationScope": "Global"}},
        ).status_code
        == 400
    )


def test_identity_lists_page_with_skiptoken(emulator_arm: httpx.Client) -> None:
    for i in range(5):
        put_identity(emulator_arm, "rg1", f"id{i}")
    put_identity(emulator_arm, "rg2", "other")
    configure(emulator_arm, pageSize=2)
    url: str | None = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version=2024-11-30"
    )
    names = []
    while url:
        page = emulator_arm.get(url).json()
        names += [i["name"] for i in page["value"]]
        url = page.get("nextLink")
        assert url is None or "$skiptoken=" in url
    assert names == [f"id{i}" for i in range(5)]
    by_sub = emulator_arm.get(
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
        params={**MSI_API, "$top": "10"},
    ).json()
    assert len(by_sub["value"]) == 6


def test_service_principal_follows_the_identity(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    sp = emulator_arm.get(f"/graph/v1.0/servicePrincipals/{ident['properties']['principalId']}").json()
    assert sp["appId"] == ident["properties"]["clientId"] and sp["displayName"] == "id1"
    assert sp["servicePrincipalType"] == "ManagedIdentity" and ident["id"] in sp["alternativeNames"]
    emulator_arm.delete(identity_path("rg1", "id1"), params=MSI_API)
    gone = emulator_arm.get(f"/graph/v1.0/servicePrincipals/{ident['properties']['principalId']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "Request_ResourceNotFound"
    recreated = put_identity(emulator_arm, "rg1", "id1")
    assert recreated["properties"]["principalId"] != ident["properties"]["principalId"]


def test_service_principal_is_invisible_while_replicating(emulator_arm: httpx.Client) -> None:
    configure(emulator_arm, replicationDelaySeconds=3)  # wide enough for a busy machine's first look
    ident = put_identity(emulator_arm, "rg1", "id1")
    url = f"/graph/v1.0/servicePrincipals/{ident['properties']['principalId']}"
    assert emulator_arm.get(url).status_code == 404
    wait_until(lambda: emulator_arm.get(url).status_code == 200, timeout=30, what="replicated")


def test_federated_credentials(emulator_arm: httpx.Client) -> None:
    put_identity(emulator_arm, "rg1", "id1")
    r = emulator_arm.put(fic_path("gh1"), params=MSI_API, json={"properties": FIC})
    assert r.status_code == 201
    assert r.json()["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
    assert emulator_arm.put(fic_path("gh1"), params=MSI_API, json={"properties": FIC}).status_code == 200
    assert emulator_arm.get(fic_path("GH1"), params=MSI_API).json()["properties"] == FIC
    dup = emulator_arm.put(fic_path("gh2x"), params=MSI_API, json={"properties": FIC})
    # 400, as the "Errors" table of Microsoft's federated identity credential considerations page says
    assert dup.status_code == 400 and dup.json()["error"] == {
        "code": "BadRequest",
        "message": "Issuer and subject combination already exists for this Managed Identity.",
    }
    listed = emulator_arm.get(
        f"{identity_path('rg1', 'id1')}/federatedIdentityCredentials", params=MSI_API
    ).json()
    assert [f["name"] for f in listed["value"]] == ["gh1"]
    assert (
        emulator_arm.put(
            fic_path("bad"), params=MSI_API, json={"properties": {"issuer": "https://x"}}
        ).status_code
        == 400
    )
    two = emulator_arm.put(
        fic_path("two"),
        params=MSI_API,
        json={"properties": {**FIC, "subject": "s2", "audiences": ["a", "b"]}},
    )
    assert two.status_code == 400
    assert two.json()["error"]["message"] == "Federated identity credentials must have exactly one audience."
    empty = emulator_arm.put(fic_path("empty"), params=MSI_API, json={})
    assert empty.status_code == 400
    assert (
        empty.json()["error"]["message"]
        == "Federated Identity Credential from HTTP body has empty properties"
    )
    badname = emulator_arm.put(fic_path("-x"), params=MSI_API, json={"properties": {**FIC, "subject": "s3"}})
    assert badname.status_code == 400
    assert badname.json()["error"]["message"] == "Federated Identity Credential name '-x' is invalid."
    assert emulator_arm.delete(fic_path("gh1"), params=MSI_API).status_code == 200
    assert emulator_arm.delete(fic_path("gh1"), params=MSI_API).status_code == 204


def test_at_most_twenty_federated_credentials(emulator_arm: httpx.Client) -> None:
    configure(emulator_arm, ficWriteWindowMs=0)
    put_identity(emulator_arm, "rg1", "id1")
    for i in range(20):
        r = emulator_arm.put(
            fic_path(f"fic{i:02}"), params=MSI_API, json={"properties": {**FIC, "subject": f"s{i}"}}
        )
        assert r.status_code == 201, r.text
    over = emulator_arm.put(fic_path("fic20"), params=MSI_API, json={"properties": {**FIC, "subject": "s20"}})
    assert (
        over.status_code == 400 and over.json()["error"]["code"] == "FederatedIdentityCredentialLimitExceeded"
    )
    assert (
        emulator_arm.put(
            fic_path("fic00"), params=MSI_API, json={"properties": {**FIC, "subject": "s0"}}
        ).status_code
        == 200
    )


def test_concurrent_credential_writes_on_one_identity_conflict(
    emulator_url: str, emulator_arm: httpx.Client
) -> None:
    configure(emulator_arm, ficWriteWindowMs=300)
    put_identity(emulator_arm, "rg1", "id1")
    put_identity(emulator_arm, "rg1", "id2")
    results: dict[str, httpx.Response] = {}

    def write(name: str, identity: str) -> None:
        with httpx.Client(base_url=emulator_url, headers={"Authorization": "Bearer t"}) as client:
            results[name] = client.put(
                fic_path(name, identity), params=MSI_API, json={"properties": {**FIC, "subject": name}}
            )

    threads = [threading.Thread(target=write, args=(f"cc{i}", "id1")) for i in range(4)]
    threads.append(threading.Thread(target=write, args=("other", "id2")))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for n, r in results.items() if n != "other")
    assert statuses.count(201) == 1 and statuses.count(409) == 3
    conflict = next(r for r in results.values() if r.status_code == 409)
    assert (
        conflict.json()["error"]["code"]
        == "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
    )
    assert results["other"].status_code == 201  # another identity is not blocked


def test_system_assigned_identity_of_a_resource_without_one_is_404(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    path = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1/providers/Microsoft.Web/sites/app"
    emulator_arm.put(path, params={"api-version": "2023-01-01"}, json={"location": "westeurope"})
    assert (
        emulator_arm.get(
            f"{path}/providers/Microsoft.ManagedIdentity/identities/default", params=MSI_API
        ).status_code
        == 404
    )
