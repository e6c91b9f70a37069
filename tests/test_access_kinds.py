"""The pure rules of the kinds of access (no Azure): what counts as naming the identity, how settings
are rewritten, which step a federated credential asks of a person, the one Resource Graph query."""

from __future__ import annotations

from typing import Any

from activities.access import KINDS, by_copy_kind, by_remove_kind
from activities.access.app_settings import APP, CONN, _names, _rewrite
from activities.access.base import NEW_CLIENT_ID, Found
from activities.access.federated_credentials import _github
from activities.snapshot import _candidates_query

OLD = {
    "clientId": "11111111-aaaa-4bbb-8ccc-000000000001",
    "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app-id",
}
NEW = {
    "clientId": "22222222-aaaa-4bbb-8ccc-000000000002",
    "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app-id-northeurope",
}
NEEDLES = [OLD["clientId"].lower(), OLD["id"].lower()]


def test_app_settings_count_when_equal_connection_strings_when_contained() -> None:
    app: dict[str, Any] = {
        "AZURE_CLIENT_ID": OLD["clientId"].upper(),  # ids compare case-insensitively
        "Storage__managedIdentityResourceId": OLD["id"],
        "NOTE": f"client {OLD['clientId']}",  # not equal: an app setting must BE the id
        "OTHER": "x",
    }
    assert _names(APP, app, NEEDLES) == ["AZURE_CLIENT_ID", "Storage__managedIdentityResourceId"]
    conn = {"Orders": {"value": f"Server=tcp:x;User Id={OLD['clientId']};", "type": "SQLAzure"},
            "Cache": {"value": "redis:6380", "type": "Custom"}}  # fmt: skip
    assert _names(CONN, conn, NEEDLES) == ["Orders"]


def test_rewrite_replaces_old_by_new_and_leaves_the_rest() -> None:
    app: dict[str, Any] = {"AZURE_CLIENT_ID": OLD["clientId"], "ID": OLD["id"].lower(), "OTHER": "x"}
    assert sorted(_rewrite(APP, app, OLD, NEW)) == ["AZURE_CLIENT_ID", "ID"]
    assert app == {"AZURE_CLIENT_ID": NEW["clientId"], "ID": NEW["id"], "OTHER": "x"}
    assert _rewrite(APP, app, OLD, NEW) == []  # nothing left: running it again writes nothing
    conn = {"Orders": {"value": f"User Id={OLD['clientId'].upper()};Encrypt=True", "type": "SQLAzure"}}
    assert _rewrite(CONN, conn, OLD, NEW) == ["Orders"]
    assert conn["Orders"] == {"value": f"User Id={NEW['clientId']};Encrypt=True", "type": "SQLAzure"}


def test_github_subjects_name_the_repository_and_the_environment() -> None:
    by_ref = _github("repo:contoso/payments:ref:refs/heads/main")
    assert by_ref["code"] == "GitHubClientId" and by_ref["target"] == "https://github.com/contoso/payments"
    assert NEW_CLIENT_ID in by_ref["message"] and "repository contoso/payments" in by_ref["message"]
    by_env = _github("repo:contoso/payments:environment:prod")
    assert by_env["target"] == "https://github.com/contoso/payments/settings/environments/prod"
    assert "environment prod of repository contoso/payments" in by_env["message"]


def test_one_resource_graph_query_carries_every_kinds_candidates() -> None:
    query = _candidates_query({"principalId": "pid-1", "clientId": OLD["clientId"], "id": OLD["id"]})
    for kind in KINDS:
        if kind.candidates:
            assert kind.candidates.format(principal_id="pid-1", client_id="", id="") in query
    assert (
        "contains 'pid-1'" in query and "issuer = tostring(properties.oidcIssuerProfile.issuerURL)" in query
    )


def test_the_table_dispatches_item_kinds_and_keys_are_unique() -> None:
    copies = [k.copy_kind for k in KINDS if k.copy_kind]
    removes = [k.remove_kind for k in KINDS if k.remove_kind]
    assert len(copies) == len(set(copies)) and len(removes) == len(set(removes))
    assert len({k.key for k in KINDS}) == len(KINDS)
    assert by_copy_kind("kvpolicy").key == "keyVaultAccessPolicies"
    assert by_remove_kind("uncosmosrole").key == "cosmosRoleAssignments"
    assert Found({}, [], rows=[{"type": "Microsoft.Sql/servers"}]).rows_of("microsoft.sql/servers")
