"""Who the mover is to the emulator (issue 9): in emulator mode its token is an unsigned JWT whose ``oid``
is ``IDMOVE_EMULATOR_PRINCIPAL_ID``; the estate-building clients (``idmove/estate.py``) stay the owner."""

from __future__ import annotations

import httpx
import pytest
from azure.core.exceptions import HttpResponseError

from idmove.estate import clients_for, seed
from shared.azure_clients import AzureClients, token_claims
from shared.settings import EMULATOR_PRINCIPAL_ID, Settings

LOOPBACK = {"arm_endpoint": "http://127.0.0.1:1", "graph_endpoint": "http://127.0.0.1:1/graph/v1.0"}


def test_the_mover_sends_a_jwt_naming_its_principal() -> None:
    clients = AzureClients(Settings(credential="emulator", **LOOPBACK))
    token = clients.credential.get_token("http://127.0.0.1:1/.default").token
    assert token_claims(token)["oid"] == EMULATOR_PRINCIPAL_ID
    assert clients.principal_id() == EMULATOR_PRINCIPAL_ID


def test_the_principal_follows_the_setting() -> None:
    other = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
    settings = Settings.from_env(
        {"IDMOVE_CREDENTIAL": "emulator", "IDMOVE_EMULATOR_PRINCIPAL_ID": other.upper(),
         "IDMOVE_ARM_ENDPOINT": LOOPBACK["arm_endpoint"], "IDMOVE_GRAPH_ENDPOINT": LOOPBACK["graph_endpoint"]}
    )  # fmt: skip
    assert AzureClients(settings).principal_id() == other
    assert Settings.from_env({}).emulator_principal_id == EMULATOR_PRINCIPAL_ID


def test_estate_clients_are_the_owner_and_the_mover_is_restricted(emu: str) -> None:
    owner = clients_for(emu)
    assert token_claims(owner.credential.get_token("x").token) == {}  # not a JWT: the estate owner
    estate = seed(owner)
    httpx.put(f"{emu}/_emulator/config", json={"rbac": {"enforce": True}}).raise_for_status()
    mover = AzureClients(
        Settings(credential="emulator", arm_endpoint=emu, graph_endpoint=f"{emu}/graph/v1.0")
    )
    with pytest.raises(HttpResponseError) as refused:
        mover.msi(estate.subscription_id).user_assigned_identities.get("rg-app", estate.identity_name)
    assert refused.value.status_code == 403
    assert EMULATOR_PRINCIPAL_ID in str(refused.value)
    assert owner.msi(estate.subscription_id).user_assigned_identities.get("rg-app", estate.identity_name).id
