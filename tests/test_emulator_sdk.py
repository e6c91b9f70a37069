"""The real, unmodified Azure SDK clients against the emulator: only base_url, a static token and the
http allowance differ from production."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity, IdentityUpdate
from azure.mgmt.resource.resources.models import GenericResource, ResourceGroup
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from tests.plugins.emulator import SUBSCRIPTION, SdkClients

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def test_identities_and_federated_credentials(emulator_sdk: SdkClients) -> None:
    emulator_sdk.resources.resource_groups.create_or_update("rg1", ResourceGroup(location="westeurope"))
    msi = emulator_sdk.msi
    created = msi.user_assigned_identities.create_or_update(
        "rg1", "id1", Identity(location="westeurope", tags={"a": "1"}, isolation_scope="Regional")
    )
    assert created.isolation_scope == "Regional" and created.tenant_id
    updated = msi.user_assigned_identities.update("rg1", "id1", IdentityUpdate(tags={"b": "2"}))
    assert updated.tags == {"b": "2"} and updated.principal_id == created.principal_id
    assert msi.user_assigned_identities.get("rg1", "id1").client_id == created.client_id
    assert [i.name for i in msi.user_assigned_identities.list_by_subscription()] == ["id1"]
    fic = msi.federated_identity_credentials.create_or_update(
        "rg1",
        "id1",
        "github",
        FederatedIdentityCredential(
            issuer="https://token.actions.githubusercontent.com",
            subject="repo:o/r:environment:prod",
            audiences=["api://AzureADTokenExchange"],
        ),
    )
    assert fic.subject == "repo:o/r:environment:prod"
    assert [f.name for f in msi.federated_identity_credentials.list("rg1", "id1")] == ["github"]
    msi.federated_identity_credentials.delete("rg1", "id1", "github")
    msi.user_assigned_identities.delete("rg1", "id1")
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.get("rg1", "id1")


def test_role_assignments(emulator_sdk: SdkClients) -> None:
    emulator_sdk.resources.resource_groups.create_or_update("rg1", ResourceGroup(location="westeurope"))
    ident = emulator_sdk.msi.user_assigned_identities.create_or_update(
        "rg1", "id1", Identity(location="westeurope")
    )
    scope = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1"
    auth = emulator_sdk.authorization
    reader = auth.role_definitions.get(scope, READER)
    assert reader.role_name == "Reader"
    name = str(uuid.uuid4())
    created = auth.role_assignments.create(
        scope,
        name,
        RoleAssignmentCreateParameters(
            role_definition_id=reader.id, principal_id=ident.principal_id, principal_type="ServicePrincipal"
        ),
    )
    assert created.principal_type == "ServicePrincipal"
    with pytest.raises(HttpResponseError) as exists:
        auth.role_assignments.create(
            scope,
            str(uuid.uuid4()),
            RoleAssignmentCreateParameters(
                role_definition_id=reader.id,
                principal_id=ident.principal_id,
                principal_type="ServicePrincipal",
            ),
        )
    assert exists.value.error is not None and exists.value.error.code == "RoleAssignmentExists"
    found = list(auth.role_assignments.list_for_subscription(filter=f"principalId eq '{ident.principal_id}'"))
    assert [a.name for a in found] == [name]
    assert [a.name for a in auth.role_assignments.list_for_resource_group("rg1")] == [name]
    deleted = auth.role_assignments.delete(scope, name)
    assert deleted is not None and deleted.name == name
    assert auth.role_assignments.delete(scope, name) is None


def test_resource_groups_and_generic_resources(emulator_sdk: SdkClients) -> None:
    res = emulator_sdk.resources
    res.resource_groups.create_or_update("rg1", ResourceGroup(location="westeurope"))
    assert res.resource_groups.check_existence("rg1") is True
    assert res.resource_groups.check_existence("nope") is False
    ident = emulator_sdk.msi.user_assigned_identities.create_or_update(
        "rg1", "id1", Identity(location="westeurope")
    )
    site_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1/providers/Microsoft.Web/sites/app"
    poller = res.resources.begin_create_or_update_by_id(
        site_id,
        GenericResource(
            location="westeurope",
            identity={"type": "UserAssigned", "userAssignedIdentities": {ident.id: {}}},
            properties={"x": 1},
        ),
        api_version="2023-01-01",
    )
    site = poller.result()
    assert site.identity.user_assigned_identities[ident.id].principal_id == ident.principal_id
    got = res.resources.get_by_id(site_id, api_version="2023-01-01")
    assert got.properties["x"] == 1
    listed = list(res.resources.list(filter="resourceType eq 'Microsoft.Web/sites'"))
    assert [r.name for r in listed] == ["app"] and listed[0].identity is not None
    assert {r.name for r in res.resources.list_by_resource_group("rg1")} == {"app", "id1"}
    res.resource_groups.begin_delete("rg1").result()
    assert res.resource_groups.check_existence("rg1") is False


def test_resource_graph(emulator_sdk: SdkClients) -> None:
    emulator_sdk.resources.resource_groups.create_or_update("rg1", ResourceGroup(location="westeurope"))
    for i in range(3):
        emulator_sdk.msi.user_assigned_identities.create_or_update(
            "rg1", f"id{i}", Identity(location="westeurope")
        )
    request = QueryRequest(
        subscriptions=[SUBSCRIPTION],
        query="Resources | project id, name | order by name asc",
        options=QueryRequestOptions(top=2),
    )
    first = emulator_sdk.resource_graph.resources(request)
    assert first.total_records == 3 and [r["name"] for r in first.data] == ["id0", "id1"] and first.skip_token
    request.options = QueryRequestOptions(top=2, skip_token=first.skip_token)
    second = emulator_sdk.resource_graph.resources(request)
    assert [r["name"] for r in second.data] == ["id2"]
