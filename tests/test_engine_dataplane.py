"""Access that lives outside Azure RBAC (issue 8), end to end: Azurite + the emulator, real SDK clients.

The estate is ``idmove/estate.py``'s ``seed`` plus ``seed_data_plane``: Key Vault access policies, a
Cosmos DB data-plane role, PostgreSQL Entra administrators, app settings and connection strings of a
site and its slot, an Azure SQL server administered by the identity, an AKS cluster whose service
account uses it, GitHub federated credentials. Other principals' grants sit next to the identity's and
must come out untouched.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from idmove.estate import (
    COSMOS_API,
    OTHER_PRINCIPAL,
    PG_API,
    TARGET_REGION,
    WEB_API,
    DataPlane,
    Estate,
    clients_for,
    seed,
    seed_data_plane,
)
from idmove.render import plan_report
from shared.azure_clients import AzureClients
from shared.service import MoveService
from shared.settings import Settings
from tests.plugins.engine import drain

WRITES = {"PUT", "PATCH", "DELETE"}
COSTS = Path(__file__).resolve().parent.parent / ".pytest_cache" / "dataplane-costs.json"
DATA_PLANE_PATH = re.compile(
    r"/accessPolicies/|/sqlRoleAssignments|/administrators|/config/(appsettings|connectionstrings)"
    r"|/operationsStatus/|/azureAsyncOperation/|/administratorAzureAsyncOperation/|/operationResults/"
    r"|Microsoft\.KeyVault/vaults/[^/]+$|databaseAccounts/[^/]+$|flexibleServers/[^/]+$"
    r"|Microsoft\.Sql/servers/[^/]+$|managedClusters/[^/]+$",
    re.IGNORECASE,
)


CATEGORIES = (
    ("keyVault", r"Microsoft\.KeyVault/"),
    ("cosmos", r"DocumentDB|operationsStatus"),
    ("postgres", r"DBforPostgreSQL"),
    ("sql", r"Microsoft\.Sql/"),
    ("appSettings", r"/config/"),
    ("aks", r"managedClusters"),
)


def _kind_of(request: dict[str, Any]) -> str:
    path = request["path"]
    name = next((n for n, pattern in CATEGORIES if re.search(pattern, path, re.IGNORECASE)), "other")
    return f"{name} {request['method']}"


@pytest.fixture
def clients(emu: str) -> AzureClients:
    return clients_for(emu)


@pytest.fixture
def estate(clients: AzureClients) -> tuple[Estate, DataPlane]:
    e = seed(clients)
    return e, seed_data_plane(clients, e)


def requests(emu: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{emu}/_emulator/requests").json())


def body(e: Estate, **extra: Any) -> dict[str, Any]:
    return {"sourceIdentityId": e.identity_id, "targetRegion": TARGET_REGION, **extra}


def run(service: MoveService, move_id: str, handler: Any = None) -> dict[str, Any]:
    drain(service, handler=handler)
    return service.get(move_id)


def policies(clients: AzureClients, vault: str) -> dict[str, dict[str, list[str]]]:
    _, got = clients.arm("GET", vault, "2023-07-01")
    return {
        p["objectId"].lower(): {k: sorted(v) for k, v in (p.get("permissions") or {}).items() if v}
        for p in got["properties"].get("accessPolicies") or []
    }


def cosmos_roles(clients: AzureClients, account: str) -> set[tuple[str, str, str]]:
    _, got = clients.arm("GET", f"{account}/sqlRoleAssignments", COSMOS_API)
    return {
        (
            a["properties"]["principalId"].lower(),
            a["properties"]["roleDefinitionId"].rsplit("/", 1)[-1],
            a["properties"]["scope"].lower(),
        )
        for a in got["value"]
    }


def pg_admins(clients: AzureClients, server: str) -> set[str]:
    _, got = clients.arm("GET", f"{server}/administrators", PG_API)
    return {a["properties"]["objectId"].lower() for a in got["value"]}


def settings(clients: AzureClients, site: str) -> dict[str, Any]:
    _, app = clients.arm("POST", f"{site}/config/appsettings/list", WEB_API)
    _, conn = clients.arm("POST", f"{site}/config/connectionstrings/list", WEB_API)
    return {"app": app["properties"], "conn": conn["properties"]}


def data_plane_state(clients: AzureClients, e: Estate, dp: DataPlane) -> dict[str, Any]:
    return {
        "vault": policies(clients, dp.vault),
        "rbacVault": policies(clients, dp.rbac_vault),
        "cosmos": sorted(cosmos_roles(clients, dp.cosmos)),
        "postgres": sorted(pg_admins(clients, dp.postgres)),
        "web": settings(clients, e.resources["web"]),
        "slot": settings(clients, dp.slot)["app"],
    }


def without_principal(state: dict[str, Any], *principals: str) -> dict[str, Any]:
    """The state of everyone but ``principals`` (what a move must never touch)."""
    drop = {p.lower() for p in principals}
    return {
        "vault": {k: v for k, v in state["vault"].items() if k not in drop},
        "rbacVault": state["rbacVault"],
        "cosmos": [r for r in state["cosmos"] if r[0] not in drop],
        "postgres": [p for p in state["postgres"] if p not in drop],
        "webOther": {k: v for k, v in state["web"]["app"].items() if k == "FEATURE_FLAGS"},
        "connOther": state["web"]["conn"]["Cache"],
    }


def test_full_move_copies_verifies_and_cleans_up_data_plane_grants(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients, emu: str
) -> None:
    e, dp = estate
    before_state = data_plane_state(clients, e, dp)
    start = len(requests(emu))
    move_id = emulated_service.start(body(e))["id"]
    status = run(emulated_service, move_id)
    assert status["status"] == "AwaitingCommit", status.get("error")
    new = status["target"]
    old_pid, new_pid = e.principal_id.lower(), new["principalId"].lower()

    # copied next to the old ones (the old identity keeps working until commit)
    state = data_plane_state(clients, e, dp)
    assert state["vault"][new_pid] == state["vault"][old_pid] == {"secrets": ["get", "list"]}
    assert (new_pid, "00000000-0000-0000-0000-000000000002", f"{dp.cosmos}/dbs/orders".lower()) in state[
        "cosmos"
    ]
    assert {old_pid, new_pid} <= set(state["postgres"])
    app, conn = state["web"]["app"], state["web"]["conn"]
    assert app["AZURE_CLIENT_ID"] == new["clientId"] and app["Storage__clientId"] == new["clientId"]
    assert app["Storage__managedIdentityResourceId"].lower() == new["id"].lower()
    assert f"User Id={new['clientId']}" in conn["Orders"]["value"]
    assert state["slot"]["AZURE_CLIENT_ID"] == new["clientId"]
    assert new_pid not in state["rbacVault"]  # a vault that authorizes with RBAC is left alone

    # actions required name the exact steps, with the new clientId filled in
    actions = status["plan"]["actionsRequired"]
    by_code = Counter(a["code"] for a in actions)
    assert by_code == {
        "GitHubClientId": 2, "KubernetesServiceAccount": 1, "FederatedIssuer": 1,
        "SqlEntraAdmin": 1, "SqlContainedUser": 1,
    }  # fmt: skip
    github = sorted(a["target"] for a in actions if a["code"] == "GitHubClientId")
    assert github == [
        "https://github.com/contoso/payments",
        "https://github.com/contoso/payments/settings/environments/prod",
    ]
    aks = next(a for a in actions if a["code"] == "KubernetesServiceAccount")
    assert aks["target"].lower().startswith(dp.cluster.lower()) and "payments/worker" in aks["message"]
    assert f"azure.workload.identity/client-id: {new['clientId']}" in aks["message"]
    assert all("<new clientId>" not in a["message"] for a in actions)
    contained = next(a for a in actions if a["code"] == "SqlContainedUser")
    assert f"CREATE USER [{new['name']}] FROM EXTERNAL PROVIDER" in contained["message"]
    assert status["plan"]["discovery"]["cosmosAccountsRead"] == 1

    emulated_service.commit(move_id)
    status = run(emulated_service, move_id)
    assert status["status"] == "Completed", status.get("error")
    after = data_plane_state(clients, e, dp)
    assert old_pid not in after["vault"] and after["vault"][new_pid] == {"secrets": ["get", "list"]}
    assert [r for r in after["cosmos"] if r[0] == old_pid] == []
    assert old_pid not in after["postgres"] and new_pid in after["postgres"]
    # nothing else touched: other principals' policies, roles, admins; other settings
    assert without_principal(after, old_pid, new_pid) == without_principal(before_state, old_pid, new_pid)
    assert after["web"]["app"]["FEATURE_FLAGS"] == "payments-v2"

    seen = [r for r in requests(emu)[start:] if "/graph/" not in r["path"] and "eventgrid" not in r["path"]]
    extra = [r for r in seen if DATA_PLANE_PATH.search(r["path"])]
    costs = {
        "by_kind": dict(Counter(_kind_of(r) for r in extra)),
        "arm_calls_total": len(seen),
        "data_plane_arm_calls": len(extra),
        "data_plane_by_method": dict(Counter(r["method"] for r in extra)),
        "data_plane_writes": sum(1 for r in extra if r["method"] in WRITES),
    }
    COSTS.parent.mkdir(exist_ok=True)
    COSTS.write_text(json.dumps(costs, indent=2))
    print("data-plane ARM calls per move:", json.dumps(costs))


def test_dry_run_lists_every_grant_and_action_and_writes_nothing(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], emu: str
) -> None:
    e, dp = estate
    start = len(requests(emu))
    move_id = emulated_service.start(body(e, dryRun=True))["id"]
    status = run(emulated_service, move_id)
    assert status["status"] == "Planned", status.get("error")
    seen = requests(emu)[start:]
    writes = [
        r for r in seen
        if r["method"] in WRITES
        or (r["method"] == "POST" and "resourcegraph" not in r["path"].lower() and not r["path"].endswith("/list"))
    ]  # fmt: skip
    assert writes == [], writes
    inventory = emulated_service.get(move_id, expand_inventory=True)["plan"]["inventory"]
    assert [g["vault"].lower() for g in inventory["keyVaultAccessPolicies"]] == [dp.vault.lower()]
    assert [g["account"].lower() for g in inventory["cosmosRoleAssignments"]] == [dp.cosmos.lower()]
    assert [g["server"].lower() for g in inventory["flexibleServerAdmins"]] == [dp.postgres.lower()]
    sites = {g["site"].lower(): g for g in inventory["appSettings"]}
    assert sites[e.resources["web"].lower()]["appSettings"] == [
        "AZURE_CLIENT_ID", "Storage__clientId", "Storage__managedIdentityResourceId",
    ]  # fmt: skip
    assert sites[e.resources["web"].lower()]["connectionStrings"] == ["Orders"]
    assert sites[dp.slot.lower()]["appSettings"] == ["AZURE_CLIENT_ID"]
    codes = sorted(a["code"] for a in status["plan"]["actionsRequired"])
    assert codes == sorted(
        ["GitHubClientId", "GitHubClientId", "KubernetesServiceAccount", "FederatedIssuer", "SqlEntraAdmin",
         "SqlContainedUser"]
    )  # fmt: skip
    assert all(
        "<new clientId>" in a["message"] for a in status["plan"]["actionsRequired"] if "Sql" not in a["code"]
    )

    # idmove plan's report: every grant and action, readable at 80 columns
    console = Console(width=80, record=True, force_terminal=False)
    console.print(plan_report(emulated_service.get(move_id, expand_inventory=True)))
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    for expected in ("Key Vault policy  kv-payments01: secrets get, list", "Cosmos DB role    cosmos-payments01",
                     "PostgreSQL admin  pg-payments01", "cosmos accounts read 1", "▸ SqlContainedUser",
                     "▸ KubernetesServiceAccount", "namespaces/payments/serviceAccounts/worker"):  # fmt: skip
        assert expected in text, text


def test_discard_restores_the_exact_source_state(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients
) -> None:
    e, dp = estate
    before = data_plane_state(clients, e, dp)
    move_id = emulated_service.start(body(e))["id"]
    assert run(emulated_service, move_id)["status"] == "AwaitingCommit"
    assert data_plane_state(clients, e, dp) != before
    emulated_service.discard(move_id)
    status = run(emulated_service, move_id)
    assert status["status"] == "Discarded", status.get("error")
    assert data_plane_state(clients, e, dp) == before


def test_auto_commit_waits_on_actions_required_and_commits_when_acknowledged(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients
) -> None:
    e, dp = estate
    move_id = emulated_service.start(body(e, autoCommit=True))["id"]
    status = run(emulated_service, move_id)
    assert status["status"] == "AwaitingCommit", status.get("error")  # not committed: steps unacknowledged
    assert status["plan"]["actionsRequired"]
    emulated_service.discard(move_id)
    assert run(emulated_service, move_id)["status"] == "Discarded"

    acknowledged = emulated_service.start(body(e, autoCommit=True, acknowledgeActionsRequired=True))["id"]
    status = run(emulated_service, acknowledged)
    assert status["status"] == "Completed", status.get("error")
    assert e.principal_id.lower() not in policies(clients, dp.vault)


def test_verify_fails_with_a_precise_diff_when_a_copied_grant_disappears(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients
) -> None:
    e, dp = estate
    move_id = emulated_service.start(body(e))["id"]
    removed: list[str] = []

    def remove_behind_its_back(name: str) -> None:  # once verify's step is claimed, before it reads
        if name == "verify:after-claim" and not removed:
            new_pid = emulated_service.get(move_id)["target"]["principalId"]
            clients.arm("PUT", f"{dp.vault}/accessPolicies/remove", "2023-07-01", {"properties": {"accessPolicies": [
                {"tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47", "objectId": new_pid,
                 "permissions": {"secrets": ["get", "list"]}}]}})  # fmt: skip
            removed.append(new_pid)

    emulated_service.crashpoint = remove_behind_its_back
    status = run(emulated_service, move_id)
    assert removed
    assert status["status"] == "Failed"
    error = status["error"]
    assert error["code"] == "VerificationFailed"
    assert (
        "Key Vault kv-payments01: access policy of the new principal lacks secrets get/list"
        in error["message"]
    )
    assert error["target"].lower() == dp.vault.lower()
    assert OTHER_PRINCIPAL in policies(clients, dp.vault)


def test_cost_of_the_data_plane_checks_on_an_estate_without_such_grants(
    emulated_service: MoveService, clients: AzureClients, emu: str
) -> None:
    """The fixed price: ``seed``'s estate alone (one web app with settings, one access-policy vault,
    no Cosmos DB / database servers / clusters) -- what the data-plane discovery, copies and checks cost."""
    e = seed(clients)
    start = len(requests(emu))
    move_id = emulated_service.start(body(e, autoCommit=True))["id"]
    status = run(emulated_service, move_id)
    assert status["status"] == "AwaitingCommit", status.get("error")  # GitHub/issuer steps unacknowledged
    emulated_service.commit(move_id)
    assert run(emulated_service, move_id)["status"] == "Completed"
    seen = [r for r in requests(emu)[start:] if "/graph/" not in r["path"] and "eventgrid" not in r["path"]]
    extra = [r for r in seen if DATA_PLANE_PATH.search(r["path"])]
    costs: dict[str, Any] = {"arm_calls_total": len(seen), "data_plane_arm_calls": len(extra),
                             "by_kind": dict(Counter(_kind_of(r) for r in extra))}  # fmt: skip
    print("base estate, ARM calls per move:", json.dumps(costs))
    assert len(extra) <= 20, costs


class Crash(RuntimeError):
    pass


def raw_data_plane(clients: AzureClients, dp: DataPlane) -> dict[str, list[str]]:
    """Entries as listed (duplicates would show here, unlike in the keyed views above)."""
    _, vault = clients.arm("GET", dp.vault, "2023-07-01")
    _, cosmos = clients.arm("GET", f"{dp.cosmos}/sqlRoleAssignments", COSMOS_API)
    _, admins = clients.arm("GET", f"{dp.postgres}/administrators", PG_API)
    return {
        "vault": [p["objectId"].lower() for p in vault["properties"]["accessPolicies"]],
        "cosmos": [a["properties"]["principalId"].lower() for a in cosmos["value"]],
        "postgres": [a["properties"]["objectId"].lower() for a in admins["value"]],
    }


@pytest.mark.parametrize("phase", ["grant", "rebind", "cleanup"])
def test_a_crash_right_after_a_data_plane_write_converges_without_duplicates(
    emulated_settings: Settings, estate: tuple[Estate, DataPlane], clients: AzureClients, emu: str, phase: str
) -> None:
    """The worker dies at ``{phase}:item-done`` right after an item that wrote to a data-plane API (the
    grant is in Azure, the item not marked Done); the redelivered item runs again and converges.

    One free batch per phase (``max_parallel_items=1``), so the item a thread marks done is the one whose
    writes that thread's data-plane count saw (the serial batches write no data plane in grant and
    cleanup; in rebind each site's serial batch writes only its own settings)."""
    e, dp = estate
    emulated_service = MoveService(emulated_settings.with_(max_parallel_items=1))
    crashed: list[str] = []
    baseline: list[int] = []
    seen = threading.local()

    def data_plane_writes() -> list[dict[str, Any]]:
        return [r for r in requests(emu) if r["method"] in WRITES and DATA_PLANE_PATH.search(r["path"])]

    def crash_after_data_plane_write(name: str) -> None:
        if crashed:
            return
        if name == f"{phase}:after-items" and not baseline:
            baseline.append(len(data_plane_writes()))
        if name != f"{phase}:item-done" or not baseline:
            return
        writes = data_plane_writes()
        before, seen.count = getattr(seen, "count", baseline[0]), len(writes)
        if len(writes) > before:
            crashed.append(writes[-1]["path"])
            raise Crash(f"worker died after {writes[-1]['method']} {writes[-1]['path']}")

    emulated_service.crashpoint = crash_after_data_plane_write
    move_id = emulated_service.start(body(e, autoCommit=True, acknowledgeActionsRequired=True))["id"]
    status = run(emulated_service, move_id)
    assert crashed, f"no data-plane write in {phase}"
    assert status["status"] == "Completed", status.get("error")
    new_pid, old_pid = status["target"]["principalId"].lower(), e.principal_id.lower()
    listed = raw_data_plane(clients, dp)
    for kind, entries in listed.items():
        assert len(entries) == len(set(entries)), (kind, entries)
        assert new_pid in entries and old_pid not in entries, (kind, entries)
    assert sorted(listed["vault"]) == sorted([OTHER_PRINCIPAL, new_pid])
    app = settings(clients, e.resources["web"])["app"]
    assert app["AZURE_CLIENT_ID"] == status["target"]["clientId"] and app["FEATURE_FLAGS"] == "payments-v2"


def test_a_crash_during_discard_still_restores_the_data_plane(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients
) -> None:
    e, dp = estate
    before = data_plane_state(clients, e, dp)
    move_id = emulated_service.start(body(e))["id"]
    assert run(emulated_service, move_id)["status"] == "AwaitingCommit"
    crashed: list[str] = []

    def crash_once(name: str) -> None:
        if name == "discard:after-resource" and not crashed:
            crashed.append(name)
            raise Crash("worker died in discard")

    emulated_service.crashpoint = crash_once
    emulated_service.discard(move_id)
    assert run(emulated_service, move_id)["status"] == "Discarded"
    assert crashed
    assert data_plane_state(clients, e, dp) == before


def _counterpart(clients: AzureClients, e: Estate) -> tuple[str, str, dict[str, Any]]:
    """The site's counterpart in the target region, deployed from the same configuration: its settings
    still name the old identity. (source site, counterpart, the source's settings)"""
    web = e.resources["web"]
    counterpart = web.replace("web-payments01", "web-payments01-ne")
    clients.arm("PUT", counterpart, WEB_API, {"location": TARGET_REGION, "kind": "app", "properties": {}})
    deployed = settings(clients, web)
    clients.arm("PUT", f"{counterpart}/config/appsettings", WEB_API, {"properties": deployed["app"]})
    clients.arm("PUT", f"{counterpart}/config/connectionstrings", WEB_API, {"properties": deployed["conn"]})
    return web, counterpart, deployed


def test_a_mapped_site_is_rebound_and_its_settings_rewritten_and_cleanup_leaves_its_source_settings(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients
) -> None:
    """``resourceMap``: the new identity goes to the counterpart, the counterpart's settings are rewritten
    (not the source's, which keeps working until it is retired), verify passes on the counterpart, and
    cleanup takes the old identity off the source site only."""
    e, _ = estate
    web, counterpart, deployed = _counterpart(clients, e)
    move_id = emulated_service.start(body(e, resourceMap={web: counterpart}))["id"]
    status = run(emulated_service, move_id)
    assert status["status"] == "AwaitingCommit", status.get("error")
    new = status["target"]
    mapped = settings(clients, counterpart)
    app, conn = mapped["app"], mapped["conn"]
    assert app["AZURE_CLIENT_ID"] == new["clientId"] and app["Storage__clientId"] == new["clientId"]
    assert app["Storage__managedIdentityResourceId"].lower() == new["id"].lower()
    assert f"User Id={new['clientId']}" in conn["Orders"]["value"]
    assert app["FEATURE_FLAGS"] == "payments-v2"  # the rest as deployed
    assert settings(clients, web) == deployed
    _, rebound = clients.arm("GET", counterpart, WEB_API)
    assert {k.lower() for k in rebound["identity"]["userAssignedIdentities"]} == {new["id"].lower()}

    emulated_service.commit(move_id)
    status = run(emulated_service, move_id)
    assert status["status"] == "Completed", status.get("error")
    _, source = clients.arm("GET", web, WEB_API)
    assert e.identity_id.lower() not in {
        k.lower() for k in (source.get("identity") or {}).get("userAssignedIdentities") or {}
    }
    assert settings(clients, counterpart) == mapped


def test_verify_reads_a_mapped_sites_settings_from_its_counterpart(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients
) -> None:
    """A counterpart's setting put back to the old client id after the copy, before verify reads it:
    verify fails naming the counterpart's setting (it reads the counterpart, not the source)."""
    e, _ = estate
    web, counterpart, _ = _counterpart(clients, e)
    move_id = emulated_service.start(body(e, resourceMap={web: counterpart}))["id"]
    reverted: list[bool] = []

    def revert_behind_its_back(name: str) -> None:  # once verify's step is claimed, before it reads
        if name == "verify:after-claim" and not reverted:
            app = settings(clients, counterpart)["app"]
            clients.arm(
                "PUT",
                f"{counterpart}/config/appsettings",
                WEB_API,
                {"properties": {**app, "AZURE_CLIENT_ID": e.client_id}},
            )
            reverted.append(True)

    emulated_service.crashpoint = revert_behind_its_back
    status = run(emulated_service, move_id)
    assert reverted
    assert status["status"] == "Failed"
    error = status["error"]
    assert error["code"] == "VerificationFailed", error
    assert f"appsettings AZURE_CLIENT_ID of {counterpart}" in error["message"], error["message"]


def test_settings_lists_only_what_the_snapshot_found_and_cleanup_catches_one_named_later(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients, emu: str
) -> None:
    """A list of a site's settings is a POST, which ARM counts against the subscription's write
    budget: copy and check list only the sub-resources the snapshot found naming the identity (the
    staging slot: app settings, no connection string). A connection string naming the old identity,
    added to the slot after its copy and before verify reads, is then not seen by verify (the move
    awaits its commit); cleanup's discovery, after the commit, finds it, rebind and verify run again
    (``SourceChangedBeforeCleanup``), and the slot's connection string names the new identity before
    the old identity is deleted."""
    e, dp = estate
    start = len(requests(emu))
    move_id = emulated_service.start(body(e))["id"]
    named_later = f"Server=tcp:sql-payments01.database.windows.net;User Id={e.client_id}"
    added: list[bool] = []

    def name_it_behind_verify(point: str) -> None:  # the copies are done; verify has not read yet
        if point == "verify:after-claim" and not added:
            conn = {"Reports": {"value": named_later, "type": "SQLAzure"}}
            clients.arm("PUT", f"{dp.slot}/config/connectionstrings", WEB_API, {"properties": conn})
            added.append(True)

    emulated_service.crashpoint = name_it_behind_verify
    status = run(emulated_service, move_id)
    assert added and status["status"] == "AwaitingCommit", status.get("error")
    new = status["target"]
    lists = Counter(
        tuple(r["path"].lower().rsplit("/config/", 1))
        for r in requests(emu)[start:]
        if r["method"] == "POST" and r["path"].lower().endswith("/list") and "/config/" in r["path"]
    )
    web, slot = e.resources["web"].lower(), dp.slot.lower()
    # snapshot, copy (rebind) and check (verify) for what names the identity; the snapshot alone otherwise
    assert lists[(web, "appsettings/list")] == 3 and lists[(web, "connectionstrings/list")] == 3, lists
    assert lists[(slot, "appsettings/list")] == 3 and lists[(slot, "connectionstrings/list")] == 1, lists

    emulated_service.commit(move_id)
    status = run(emulated_service, move_id)
    assert status["status"] == "Completed", status.get("error")
    assert [w for w in status["plan"]["warnings"] if w["code"] == "SourceChangedBeforeCleanup"]
    _, conn = clients.arm("POST", f"{dp.slot}/config/connectionstrings/list", WEB_API)
    assert conn["properties"]["Reports"]["value"] == named_later.replace(e.client_id, new["clientId"])
    seen = requests(emu)[start:]
    rewrite = max(
        n
        for n, r in enumerate(seen)
        if r["method"] == "PUT" and r["path"].lower() == f"{slot}/config/connectionstrings"
    )
    deleted = next(
        n
        for n, r in enumerate(seen)
        if r["method"] == "DELETE" and r["path"].lower() == e.identity_id.lower()
    )
    assert rewrite < deleted, (
        "the old identity was deleted before the slot's connection string named the new one"
    )


def test_discard_after_cleanup_widened_a_site_entry_restores_both_settings(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients
) -> None:
    """Cleanup's discovery replaces the slot's entry by what still names the old identity then (a
    connection string named after the snapshot); its app setting, rewritten by the first copy, is no
    longer in it. A discard then (the second verify fails) still puts both back: undo lists both."""
    e, dp = estate
    move_id = emulated_service.start(body(e))["id"]
    status = run(emulated_service, move_id)
    assert status["status"] == "AwaitingCommit", status.get("error")
    named_later = f"Server=tcp:sql-payments01.database.windows.net;User Id={e.client_id}"
    conn = {"Reports": {"value": named_later, "type": "SQLAzure"}}
    clients.arm("PUT", f"{dp.slot}/config/connectionstrings", WEB_API, {"properties": conn})
    reverted: list[bool] = []

    def fail_the_second_verify(point: str) -> None:  # the connection string back to the old identity
        if point == "verify:after-claim" and not reverted:  # set after the commit: the second verify
            clients.arm("PUT", f"{dp.slot}/config/connectionstrings", WEB_API, {"properties": conn})
            reverted.append(True)

    emulated_service.commit(move_id)
    emulated_service.crashpoint = fail_the_second_verify
    status = run(emulated_service, move_id)
    assert reverted and status["status"] == "Failed", status.get("error")
    assert status["error"]["code"] == "VerificationFailed" and "Reports" in status["error"]["message"]
    emulated_service.crashpoint = lambda point: None
    emulated_service.discard(move_id)
    status = run(emulated_service, move_id)
    assert status["status"] == "Discarded", status.get("error")
    assert settings(clients, dp.slot)["app"]["AZURE_CLIENT_ID"] == e.client_id


def test_a_mapped_site_has_both_kinds_of_settings_rewritten_at_its_counterpart(
    emulated_service: MoveService, estate: tuple[Estate, DataPlane], clients: AzureClients
) -> None:
    """The staging slot names the identity in an app setting only; its counterpart, deployed apart,
    also names it in a connection string. Cleanup's discovery reads the sites the old identity is
    attached to, never a counterpart, so copy and check list both kinds there: the counterpart's
    connection string names the new identity before anyone commits."""
    e, dp = estate
    counter_site = e.resources["web"].replace("web-payments01", "web-payments01-ne")
    clients.arm("PUT", counter_site, WEB_API, {"location": TARGET_REGION, "kind": "app", "properties": {}})
    counter_slot = f"{counter_site}/slots/staging"
    clients.arm("PUT", counter_slot, WEB_API, {"location": TARGET_REGION, "properties": {}})
    app = {"AZURE_CLIENT_ID": e.client_id}
    clients.arm("PUT", f"{counter_slot}/config/appsettings", WEB_API, {"properties": app})
    named = f"Server=tcp:sql-payments01.database.windows.net;User Id={e.client_id}"
    conn = {"Reports": {"value": named, "type": "SQLAzure"}}
    clients.arm("PUT", f"{counter_slot}/config/connectionstrings", WEB_API, {"properties": conn})

    move_id = emulated_service.start(body(e, resourceMap={dp.slot: counter_slot}))["id"]
    status = run(emulated_service, move_id)
    assert status["status"] == "AwaitingCommit", status.get("error")
    new = status["target"]
    mapped = settings(clients, counter_slot)
    assert mapped["app"]["AZURE_CLIENT_ID"] == new["clientId"]
    assert mapped["conn"]["Reports"]["value"] == named.replace(e.client_id, new["clientId"])
