"""Commit never deletes what was not copied (issue 12, item 5).

Hours may pass between the snapshot and the commit. Whatever the source was granted meanwhile (a
role assignment, a group membership, a federated credential) is found by cleanup before it deletes
anything: copied and verified first, and only then does the old identity go.
"""

from __future__ import annotations

import uuid

import pytest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import FederatedIdentityCredential

from idmove.estate import ROLES, Estate
from shared import crashpoints
from shared.azure_clients import AzureClients
from shared.service import MoveService
from tests.plugins.engine import drain
from tests.test_engine_moves import clients, estate, move_body, principal_state, requests, run

__all__ = ["clients", "estate"]
LATE_SCOPE_RG = "rg-data"
LATE_ISSUER = "https://token.actions.githubusercontent.com"
LATE_SUBJECT = "repo:contoso/late:ref:refs/heads/main"


def _grant_more(clients: AzureClients, estate: Estate) -> dict[str, str]:
    """What someone grants the old identity while the move awaits commit."""
    sub = estate.subscription_id
    scope = f"/subscriptions/{sub}/resourceGroups/{LATE_SCOPE_RG}"
    clients.authorization(sub).role_assignments.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{ROLES['Contributor']}",
            principal_id=estate.principal_id,
            principal_type="ServicePrincipal",
        ),
    )
    graph = clients.graph
    group = graph.post(
        "/groups",
        {"displayName": "sg-late", "mailEnabled": False, "mailNickname": "sg-late", "securityEnabled": True},
    )
    graph.post(
        f"/groups/{group['id']}/members/$ref",
        {"@odata.id": f"{graph.endpoint}/directoryObjects/{estate.principal_id}"},
    )
    clients.msi(sub).federated_identity_credentials.create_or_update(
        estate.resource_group,
        estate.identity_name,
        "fic-late",
        FederatedIdentityCredential(
            issuer=LATE_ISSUER, subject=LATE_SUBJECT, audiences=["api://AzureADTokenExchange"]
        ),
    )
    return {"scope": scope.lower(), "group": group["id"]}


def test_access_granted_while_awaiting_commit_is_copied_and_verified_before_cleanup(
    emulated_service: MoveService, estate: Estate, clients: AzureClients
) -> None:
    service = emulated_service
    status = run(service, move_body(estate))
    assert status["status"] == "AwaitingCommit", status.get("error")
    late = _grant_more(clients, estate)

    service.commit(status["id"])
    drain(service)
    back = service.get(status["id"])
    # the late GitHub credential is a consumer the commit did not know of: a person must act first
    assert back["status"] == "AwaitingCommit", back.get("error")
    news = [a for a in back["plan"]["actionsRequired"] if a["code"] == "GitHubClientId"]
    assert any("contoso/late" in str(a["target"]) + a["message"] for a in news), news
    assert principal_state(clients, estate, estate.principal_id)["groups"]  # nothing deleted yet
    service.commit(status["id"])
    drain(service)
    done = service.get(status["id"])
    assert done["status"] == "Completed", done.get("error")
    target = done["target"]

    new = principal_state(clients, estate, target["principalId"])
    contributor = ROLES["Contributor"].lower()
    assert any(
        scope == late["scope"] and role.lower() == contributor for scope, role, *_ in new["assignments"]
    )
    assert late["group"] in new["groups"]
    creds = {
        (c.issuer, c.subject)
        for c in clients.msi(estate.subscription_id).federated_identity_credentials.list(
            target["resourceGroup"], target["name"]
        )
    }
    assert (LATE_ISSUER, LATE_SUBJECT) in creds
    # the old identity is gone, and with it (cleanup) the access it had
    old = principal_state(clients, estate, estate.principal_id)
    assert old == {"assignments": [], "groups": [], "appRoles": []}

    warnings = [w for w in done["plan"]["warnings"] if w["code"] == "SourceChangedBeforeCleanup"]
    assert len(warnings) == 1
    message = warnings[0]["message"]
    assert "fic-late" in message and late["group"] in message, message
    assert "4 grant(s)" in message, message  # the role, the group, the credential, its GitHub step
    assert all(p["status"] == "Succeeded" for p in done["phases"]), done["phases"]
    # nothing twice: the seeded estate's 5 assignments and 2 groups, plus the late ones
    assert len(new["assignments"]) == len(set(new["assignments"])) == 6, new["assignments"]
    assert len(new["groups"]) == len(set(new["groups"])) == 3, new["groups"]


def test_nothing_new_on_the_source_means_cleanup_goes_straight_on(
    emulated_service: MoveService, estate: Estate
) -> None:
    status = run(emulated_service, move_body(estate, autoCommit=True, acknowledgeActionsRequired=True))
    assert status["status"] == "Completed", status.get("error")
    assert not [w for w in status["plan"]["warnings"] if w["code"] == "SourceChangedBeforeCleanup"]


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("point", crashpoints.for_source_changed())
def test_a_crash_while_going_back_to_grant_converges(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, point: str
) -> None:
    service = emulated_service
    status = run(service, move_body(estate))
    assert status["status"] == "AwaitingCommit", status.get("error")
    late = _grant_more(clients, estate)
    crashed: list[str] = []

    def crash_once(name: str) -> None:
        if name == point and not crashed:
            crashed.append(name)
            raise Crash(f"worker died at {name}")

    service.crashpoint = crash_once
    service.commit(status["id"])
    drain(service)
    assert service.get(status["id"])["status"] == "AwaitingCommit"  # the late GitHub step (see above)
    service.commit(status["id"])
    drain(service)
    done = service.get(status["id"])
    assert crashed == [point]
    assert done["status"] == "Completed", done.get("error")
    new = principal_state(clients, estate, done["target"]["principalId"])
    assert late["group"] in new["groups"]
    assert len(new["assignments"]) == len(set(new["assignments"])) == 6, new["assignments"]


def test_added_access_the_plan_refuses_fails_the_move_before_anything_is_deleted(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    """An Owner assignment granted while awaiting commit (no allowPrivilegedRoles): not copied, and
    the old identity keeps everything; a person decides (discard stays possible)."""
    service = emulated_service
    status = run(service, move_body(estate))
    assert status["status"] == "AwaitingCommit", status.get("error")
    sub = estate.subscription_id
    clients.authorization(sub).role_assignments.create(
        f"/subscriptions/{sub}/resourceGroups/{LATE_SCOPE_RG}",
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{ROLES['Owner']}",
            principal_id=estate.principal_id,
            principal_type="ServicePrincipal",
        ),
    )
    before = len(requests(emu))
    service.commit(status["id"])
    drain(service)
    failed = service.get(status["id"])
    assert failed["status"] == "Failed", failed
    assert failed["error"]["code"] == "PlanBlocked" and "Owner" in failed["error"]["message"], failed["error"]
    assert [r for r in requests(emu)[before:] if r["method"] in ("PUT", "PATCH", "DELETE")] == []
    assert service.discard(status["id"])["status"] == "Running"  # nothing deleted: discard is allowed
    drain(service)
    assert service.get(status["id"])["status"] == "Discarded"


def test_a_cleanup_that_goes_back_to_grant_before_removing_anything_leaves_discard_possible(
    emulated_service: MoveService, estate: Estate, clients: AzureClients
) -> None:
    """Cleanup saves ``removing`` (which refuses a discard) only after its re-read found nothing new:
    a cleanup sent back to grant deleted nothing, and the move can still be discarded."""
    service = emulated_service
    status = run(service, move_body(estate))
    assert status["status"] == "AwaitingCommit", status.get("error")
    _grant_more(clients, estate)
    service.commit(status["id"])
    drain(service)
    back = service.get(status["id"])
    assert back["status"] == "AwaitingCommit", back.get("error")  # the late GitHub step (see above)
    assert [w for w in back["plan"]["warnings"] if w["code"] == "SourceChangedBeforeCleanup"]
    record = service.store.get_move(status["id"])
    assert record is not None and "removing" not in record.phase_entry("cleanup")
    assert service.discard(status["id"])["status"] == "Running"
    drain(service)
    assert service.get(status["id"])["status"] == "Discarded"
