"""``idmove.inventory``: what the demo's source-vs-target comparison reads from ARM and Graph (the emulator)."""

from __future__ import annotations

from idmove.estate import clients_for, seed
from idmove.inventory import Inventory


def test_app_roles_are_shown_by_their_value_not_their_guid(emulator_url: str) -> None:
    estate = seed(clients_for(emulator_url))
    with Inventory(emulator_url) as reader:
        found = reader.read(estate.identity_id, estate.attached_ids, [estate.subscription_id])
    labels = sorted(found.items["appRoles"].values())
    assert labels == ["Microsoft Graph / User.Read.All"], labels
    assert all(len(key) == 2 for key in found.items["appRoles"])  # compared by (resource, role id)


def test_an_unknown_app_role_or_resource_falls_back_to_the_id(emulator_url: str) -> None:
    with Inventory(emulator_url) as reader:
        assert reader.app_role_value("no-such-principal", "abc") == "abc"
        graph_sp = reader._get(
            f"{reader.graph_url}/servicePrincipals",
            **{"$filter": "appId eq '00000003-0000-0000-c000-000000000000'"},
        )["value"][0]
        assert (
            reader.app_role_value(graph_sp["id"], "DF021288-BDEF-4463-88DB-98F22DE89214") == "User.Read.All"
        )
        assert reader.app_role_value(graph_sp["id"], "11111111-1111-1111-1111-111111111111") == (
            "11111111-1111-1111-1111-111111111111"
        )


def test_access_policies_and_app_settings_are_read_like_azure_serves_them(emulator_url: str) -> None:
    estate = seed(clients_for(emulator_url))
    with Inventory(emulator_url) as reader:
        found = reader.read(estate.identity_id, estate.attached_ids, [estate.subscription_id])
    assert sorted(found.items["accessPolicies"].values()) == ["kv-payments01: secrets get, list"]
    # the values come from POST .../config/appsettings/list: a GET of the site carries none
    assert sorted(found.items["appSettings"].values()) == ["web-payments01: AZURE_CLIENT_ID"]
