"""Fleet discovery: the moves of a region decommission share one discovery (DESIGN.md "Fleet discovery").

Real Azurite and the emulator. Requests are counted from the emulator's log: Resource Graph queries
and subscription-wide role-assignment listings grow with the subscriptions, not with the identities;
a move's snapshot from the fleet's discovery is the snapshot per-move discovery makes; a discovery
read before a move's snapshot step began is never used by it; cleanup's re-read still finds access
granted after the commit; and two members racing for one generation get one run. A move waiting for
another's run is woken through its own retry message (one message per waiting step, the step's own
token); a wake whose message is gone is harmless.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest

from idmove.estate import ROLES
from shared import fleet_discovery
from shared.decommission import is_step, move_id_for
from shared.errors import TransientError
from shared.fleet_discovery import FleetStore, Parts, shared_result
from shared.service import MoveService
from shared.settings import Settings
from shared.work_queue import WorkMessage
from tests.plugins.emulator import RBAC_API, configure, identity_path, put_group, put_identity
from tests.plugins.engine import drain

SOURCE, TARGET = "japaneast", "japanwest"
OWNER = {"Authorization": "Bearer t"}
READER, CONTRIBUTOR = ROLES["Reader"], ROLES["Contributor"]
GRAPH_QUERY = "/providers/microsoft.resourcegraph/resources"
WEB_API = {"api-version": "2023-12-01"}


def _assign(arm: httpx.Client, scope: str, principal: str, role: str) -> None:
    sub = scope.split("/")[2]
    body = {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            "principalId": principal,
            "principalType": "ServicePrincipal",
        }
    }
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    r = arm.put(path, params=RBAC_API, json=body)
    assert r.status_code in (200, 201), r.text


def _site(arm: httpx.Client, sub: str, group: str, name: str, identity: dict[str, Any]) -> str:
    """A web app the identity is attached to, naming its clientId in an app setting."""
    put_group(arm, group, SOURCE, sub)
    site = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Web/sites/{name}"
    body = {
        "location": SOURCE,
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity["id"]: {}}},
        "properties": {
            "serverFarmId": f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Web/serverfarms/plan"
        },
    }
    r = arm.put(site, params=WEB_API, json=body)
    assert r.status_code in (200, 201), r.text
    settings = {"properties": {"AZURE_CLIENT_ID": identity["properties"]["clientId"]}}
    r = arm.put(f"{site}/config/appsettings", params=WEB_API, json=settings)
    assert r.status_code in (200, 201), r.text
    return site


def _estate(emu: str, subs: list[str], per_sub: int) -> dict[str, dict[str, Any]]:
    """``per_sub`` identities in each subscription, each with a Reader role on its subscription, a
    Contributor role in the OTHER subscription and a web app there using it (cross-subscription)."""
    made: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=emu, headers=OWNER, timeout=30) as arm:
        for i, sub in enumerate(subs):
            other = subs[(i + 1) % len(subs)]
            for _ in range(per_sub):
                tag = uuid.uuid4().hex[:6]
                identity = put_identity(arm, f"rg-{tag}", f"id-{tag}", SOURCE, sub)
                principal = identity["properties"]["principalId"]
                _assign(arm, f"/subscriptions/{sub}", principal, READER)
                put_group(arm, f"rg-data-{tag}", SOURCE, other)
                _assign(arm, f"/subscriptions/{other}/resourceGroups/rg-data-{tag}", principal, CONTRIBUTOR)
                _site(arm, other, f"rg-app-{tag}", f"web-{tag}", identity)
                made[identity_path(f"rg-{tag}", f"id-{tag}", sub).lower()] = identity
    return made


def _log(emu: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{emu}/_emulator/requests", timeout=30).json())


def _assigned_scopes(emu: str, sub: str, principal: str) -> list[str]:
    """The scopes (lower case) of the role assignments of ``principal`` in ``sub``, read as the owner."""
    auth = httpx.get(
        f"{emu}/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments",
        params={**RBAC_API, "$filter": f"principalId eq '{principal}'"},
        headers=OWNER,
    ).json()["value"]
    return [str(a["properties"]["scope"]).lower() for a in auth]


def _graph_queries(log: list[dict[str, Any]]) -> int:
    return sum(
        1 for r in log if r["method"] == "POST" and GRAPH_QUERY in r["path"].lower() and r["status"] < 400
    )


def _subscription_listings(log: list[dict[str, Any]], principals: set[str]) -> int:
    """Discovery's role-assignment lists of a whole subscription: unfiltered (fleet) or by one of
    ``principals`` (per move); verify's lists of the new principals and the preflight's reads of the
    mover's own (``assignedTo``) are not discovery."""
    found = 0
    for r in log:
        path, query = r["path"].lower().rstrip("/"), unquote_plus(str(r.get("query") or "")).lower()
        if not (
            r["method"] == "GET"
            and path.endswith("/providers/microsoft.authorization/roleassignments")
            and path.count("/") == 5
        ):
            continue
        if "$filter" not in query or any(f"principalid eq '{p}'" in query for p in principals):
            found += 1
    return found


def snapshot_phase_only(
    service: MoveService, hold: set[str] | None = None, held: list[str] | None = None
) -> Any:
    """Work the decommission's steps and the moves' snapshots; later phases are acknowledged unworked
    (the estate stays as it was). Snapshot messages of the moves in ``hold`` are kept in ``held``."""

    def handle(body: str, dequeue_count: int) -> None:
        if is_step(body):
            service.handle_message(body, dequeue_count)
            return
        message = json.loads(body)
        if message.get("phase") != "snapshot":
            return
        if hold and (message.get("move_id") or message.get("moveId")) in hold and held is not None:
            held.append(body)
            return
        service.handle_message(body, dequeue_count)

    return handle


def _snapshot(service: MoveService, move_id: str) -> dict[str, Any]:
    move = service.store.get_move(move_id)
    assert move is not None and move.snapshot_chunks, move
    return dict(service.store.load_snapshot(move.id, move.snapshot_chunks, move.snapshot_generation))


def _decommission(service: MoveService, subs: list[str], ahead: bool = True, **extra: Any) -> str:
    """``ahead=False``: the ``starts`` step runs no discovery ahead, so every snapshot joins a
    generation and waits for it (the path cleanups and late snapshots take)."""
    service.decommissions.discover_ahead = ahead
    event_id = str(uuid.uuid4())
    data = {"sourceRegion": SOURCE, "targetRegion": TARGET, "subscriptionIds": subs, **extra}
    service.start_region_decommission(event_id, data)
    return event_id


def test_a_decommission_discovers_once_per_subscription_and_snapshots_equal_per_move_ones(
    emulated_service: MoveService, emu: str
) -> None:
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    subs = [str(uuid.uuid4()), str(uuid.uuid4())]
    identities = _estate(emu, subs, per_sub=4)
    service = emulated_service
    service.store.ensure_tables()

    # each identity moved alone first (dry runs: per-move discovery, nothing written)
    alone: dict[str, dict[str, Any]] = {}
    started_alone: list[str] = []
    before = len(_log(emu))
    for identity_id in identities:
        status = service.start({"sourceIdentityId": identity_id, "targetRegion": TARGET, "dryRun": True})
        drain(service, timeout=60)
        alone[identity_id] = _snapshot(service, status["id"])
        started_alone.append(status["id"])
    per_move = _log(emu)[before:]
    principals = {i["properties"]["principalId"].lower() for i in identities.values()}
    assert _graph_queries(per_move) == 2 * len(identities)
    assert _subscription_listings(per_move, principals) >= len(subs) * len(identities)  # + headroom counts

    before = len(_log(emu))
    event_id = _decommission(service, subs)
    drain(service, timeout=180)
    log = _log(emu)[before:]
    assert all(service.get(move_id_for(event_id, i))["status"] == "AwaitingCommit" for i in identities)

    # O(S), not O(N): one batch of identities = 1 query (uses and candidates ORed), one listing per
    # subscription, per generation; the snapshots arrive in one or two generations
    assert _graph_queries(log) <= 2, _graph_queries(log)
    assert _subscription_listings(log, principals) <= 2 * len(subs), _subscription_listings(log, principals)
    for identity_id, snapshot in alone.items():
        assert _snapshot(service, move_id_for(event_id, identity_id)) == snapshot
        assert len(snapshot["roleAssignments"]) == 2 and len(snapshot["attachments"]) == 1, snapshot
        assert snapshot["appSettings"] and snapshot["appSettings"][0]["appSettings"] == ["AZURE_CLIENT_ID"]
    # the engine names each move's fleet from its start (no link lookup): the same as its link
    from shared.engine import _fleet_of

    links = FleetStore.for_settings(service.settings)
    for identity_id in identities:
        move = service.store.get_move(move_id_for(event_id, identity_id))
        assert move is not None and _fleet_of(move) == links.fleet_of(move.id) is not None
    for move_id in started_alone:  # moves started by HTTP belong to no fleet
        move = service.store.get_move(move_id)
        assert move is not None and _fleet_of(move) is None


def test_a_decommissions_snapshots_find_their_discovery_done_ahead_and_never_wait(
    emulated_service: MoveService, emu: str
) -> None:
    """Each ``starts`` message runs its moves' first discovery before starting them: every snapshot
    finds its share at its first visit (no step sent back to wait, no member joining a generation),
    one Resource Graph query per ``starts`` message, and the snapshots still equal per-move ones
    (``test_a_decommission_discovers_once_per_subscription_and_snapshots_equal_per_move_ones``)."""
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    subs = [str(uuid.uuid4()) for _ in range(2)]
    identities = _estate(emu, subs, per_sub=3)
    service = emulated_service
    service.store.ensure_tables()
    waits: list[str] = []
    first: set[str] = set()  # the moves whose first message (``_start``, spaced by ``starts``) was sent
    send = service.queue.send

    def sending(message: WorkMessage, delay_seconds: float = 0) -> str:
        if message.phase == "snapshot" and message.move_id not in first:
            first.add(message.move_id)
        elif message.phase == "snapshot" and delay_seconds > 0:
            waits.append(message.move_id)
        return send(message, delay_seconds)

    service.queue.send = sending  # type: ignore[method-assign]
    store = FleetStore.for_settings(service.settings)
    before = len(_log(emu))
    event_id = _decommission(service, subs)
    drain(service, timeout=180, handler=snapshot_phase_only(service))
    moves = [move_id_for(event_id, i) for i in identities]
    assert all(service.get(m)["status"] == "AwaitingCommit" for m in moves)
    assert waits == []
    assert _graph_queries(_log(emu)[before:]) == len(subs)  # one per starts message (one per page here)
    fleet = store.fleet_of(moves[0])
    rows = list(
        store.table.query_entities(f"PartitionKey eq '{fleet}' and RowKey ge 'g|' and RowKey lt 'g}}'")
    )
    assert len(rows) == len(subs) and all(r["Ahead"] is True and r["Status"] == "Done" for r in rows), rows
    members = list(
        store.table.query_entities(f"PartitionKey eq '{fleet}' and RowKey ge 'm|' and RowKey lt 'm}}'")
    )
    # each move's one member row, written by the starts step: none joined anything else or kept a wake
    assert len(members) == len(identities) and {int(m["Gen"]) for m in members} == {1, 2}, members
    assert not any(m.get("Wake") for m in members)
    for identity_id, identity in identities.items():
        snap = _snapshot(service, move_id_for(event_id, identity_id))
        assert len(snap["roleAssignments"]) == 2 and len(snap["attachments"]) == 1, snap
        assert snap["identity"]["principalId"] == identity["properties"]["principalId"]


def test_runs_side_by_side_share_a_listing_begun_after_they_began_and_a_later_run_lists_afresh(
    emulated_service: MoveService, emu: str
) -> None:
    """``activities/fleet.py`` ``_listing``: a subscription's role-assignment listing serves every run
    of the process that began before it (one ARM listing for runs side by side), never a run that
    began after it: that one lists again and sees what was granted meanwhile."""
    from activities import fleet
    from shared.context import PhaseContext
    from shared.models import MoveRequest

    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    sub = str(uuid.uuid4())
    identity_id, identity = next(iter(_estate(emu, [sub], per_sub=1).items()))
    service = emulated_service
    request = MoveRequest.parse({"sourceIdentityId": identity_id, "targetRegion": TARGET})
    ctx = PhaseContext(clients=service.clients(), settings=service.settings, move_id="m", request=request)

    def listings() -> int:
        path = f"/subscriptions/{sub}/providers/microsoft.authorization/roleassignments"
        return sum(1 for r in _log(emu) if r["method"] == "GET" and r["path"].lower().rstrip("/") == path)

    before = listings()
    since = time.monotonic()  # two runs that began here
    first, listed_here = fleet._listing(ctx, sub, since)
    second, shared = fleet._listing(ctx, sub, since)
    assert listed_here and not shared and first == second and listings() == before + 1

    with httpx.Client(base_url=emu, headers=OWNER, timeout=30) as arm:  # granted after that listing
        _assign(arm, f"/subscriptions/{sub}", identity["properties"]["principalId"], CONTRIBUTOR)
    later, listed_again = fleet._listing(ctx, sub, time.monotonic())  # a run that began after it
    assert listed_again and listings() == before + 2
    assert len(later[0]) == len(first[0]) + 1 and later[1] == first[1] + 1


def test_access_granted_after_a_fleet_discovery_is_seen_by_a_snapshot_that_starts_later(
    emulated_service: MoveService, emu: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The move's snapshot step joins a discovery that reads Azure after it joined: a discovery that ran
    before (for the other moves) is not reused, however recent; the starts step's run ahead only by a
    step that comes within ``AHEAD_FRESH`` of it."""
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    sub = str(uuid.uuid4())
    identities = _estate(emu, [sub], per_sub=3)
    late_id, late = next(iter(identities.items()))
    service = emulated_service
    service.store.ensure_tables()
    event_id = _decommission(service, [sub])
    late_move = move_id_for(event_id, late_id)
    held: list[str] = []
    drain(service, timeout=180, handler=snapshot_phase_only(service, {late_move}, held))
    assert held, "the late move's snapshot message was not seen"
    others = [i for i in identities if i != late_id]
    assert all(service.store.get_move(move_id_for(event_id, i)).snapshot_chunks for i in others)  # type: ignore[union-attr]

    # granted after the others' discovery ran, before the late move's snapshot step
    with httpx.Client(base_url=emu, headers=OWNER, timeout=30) as arm:
        principal = late["properties"]["principalId"]
        put_group(arm, "rg-late", SOURCE, sub)
        _assign(arm, f"/subscriptions/{sub}/resourceGroups/rg-late", principal, CONTRIBUTOR)
        site = _site(arm, sub, "rg-late-app", f"web-late-{uuid.uuid4().hex[:6]}", late)

    before = len(_log(emu))
    # the starts step's run ahead read Azure before the late move's step began: a step that comes
    # later than ``AHEAD_FRESH`` after it (here: at once) joins a run of its own
    monkeypatch.setattr(fleet_discovery, "AHEAD_FRESH", 0.0)
    service.handle_message(held[0], 1)
    drain(service, timeout=120, handler=snapshot_phase_only(service))
    snap = _snapshot(service, late_move)
    scopes = {a["scope"].lower() for a in snap["roleAssignments"]}
    assert f"/subscriptions/{sub}/resourcegroups/rg-late" in scopes, scopes
    assert site.lower() in {a["id"].lower() for a in snap["attachments"]}
    assert _graph_queries(_log(emu)[before:]) == 1  # a generation of its own (uses and candidates ORed)


def test_cleanup_of_a_fleet_move_still_copies_access_granted_after_the_commit(
    emulated_service: MoveService, emu: str
) -> None:
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    sub = str(uuid.uuid4())
    identities = _estate(emu, [sub], per_sub=2)
    service = emulated_service
    event_id = _decommission(service, [sub], autoCommit=False)
    drain(service, timeout=240)
    moves = {i: move_id_for(event_id, i) for i in identities}
    assert all(service.get(m)["status"] == "AwaitingCommit" for m in moves.values()), [
        (service.get(m)["status"], service.get(m).get("error")) for m in moves.values()
    ]

    late_id, late = next(iter(identities.items()))
    with httpx.Client(base_url=emu, headers=OWNER, timeout=30) as arm:
        put_group(arm, "rg-after-commit", SOURCE, sub)
        _assign(
            arm,
            f"/subscriptions/{sub}/resourceGroups/rg-after-commit",
            late["properties"]["principalId"],
            CONTRIBUTOR,
        )
    for move_id in moves.values():
        service.commit(move_id)
    drain(service, timeout=240)

    done = service.get(moves[late_id])
    assert done["status"] == "Completed", done.get("error")
    assert [w for w in done["plan"]["warnings"] if w["code"] == "SourceChangedBeforeCleanup"]
    scopes = _assigned_scopes(emu, sub, done["target"]["principalId"])
    assert any(s.endswith("/rg-after-commit") for s in scopes), scopes
    other = service.get(next(m for i, m in moves.items() if i != late_id))
    assert other["status"] == "Completed", other.get("error")
    assert not [w for w in other["plan"]["warnings"] if w["code"] == "SourceChangedBeforeCleanup"]
    # snapshots and cleanups joined generations of one series (activities/fleet.py SERIES), each
    # move's cleanup as a member of its own beside its snapshot's
    store = FleetStore.for_settings(service.settings)
    fleet = store.fleet_of(moves[late_id])
    rows = list(store.table.query_entities(f"PartitionKey eq '{fleet}'"))
    kinds = {str(r["RowKey"]).split("|")[1] for r in rows if str(r["RowKey"])[:2] in ("g|", "m|")}
    assert kinds == {"discovery"}, kinds
    steps = {tuple(str(r["RowKey"]).split("|")[2:4]) for r in rows if str(r["RowKey"]).startswith("m|")}
    assert {(m, step) for m in moves.values() for step in ("snapshot", "cleanup")} <= steps, steps


# ---- the coordination itself, on Azurite --------------------------------------------------------
@pytest.fixture
def fleet_store(engine_settings: Settings) -> FleetStore:
    return FleetStore.for_settings(engine_settings)


def _until_done(store: FleetStore, fleet: str, member: str, run: Any) -> Any:
    """What the engine does with a member's step: again after each wait, until it has its result."""
    import time

    for _ in range(40):
        try:
            return shared_result(store, fleet, "snapshot", member, {"m": member}, run)
        except TransientError as exc:
            if exc.code != "FleetDiscoveryRunning":
                raise
            time.sleep(min(exc.retry_after or 1.0, 1.0))
    raise AssertionError("never done")


def _eventually(condition: Any, tries: int = 100) -> None:
    """Polls ``condition`` every 20 ms, ``tries`` times at most (another thread's progress)."""
    for _ in range(tries):
        if condition():
            return
        threading.Event().wait(0.02)


def _until_interrupted(store: FleetStore, fleet: str, member: str, run: Any) -> TransientError:
    """``_until_done`` until the run raises something other than a wait: that error."""
    import time

    for _ in range(20):
        try:
            shared_result(store, fleet, "snapshot", member, {}, run)
        except TransientError as exc:
            if exc.code != "FleetDiscoveryRunning":
                return exc
            time.sleep(min(exc.retry_after or 1.0, 1.0))
    raise AssertionError("the run was never interrupted")


def test_members_racing_for_a_generation_share_one_run_and_duplicates_are_harmless(
    fleet_store: FleetStore,
) -> None:
    runs: list[list[str]] = []
    lock = threading.Lock()

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        with lock:
            runs.append([m for m, _ in members])
        return {m: {"for": d["m"]} for m, d in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    members = ["a", "b", "c", "a"]  # "a" twice: a duplicate message of the same step
    results: dict[int, Any] = {}

    def member(n: int) -> None:
        results[n] = _until_done(fleet_store, fleet, members[n], run)

    threads = [threading.Thread(target=member, args=(n,)) for n in range(len(members))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runs) == 1 and sorted(runs[0]) == ["a", "b", "c"], runs
    assert [results[n]["for"] for n in range(len(members))] == members


def test_a_throttled_run_resumes_from_the_reads_it_stored(
    fleet_store: FleetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 0.0)  # the runner's retry goes to the queue
    reads: list[str] = []
    throttled: list[bool] = []

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        first = parts.step("first", lambda: reads.append("first") or 1)
        if not throttled:
            throttled.append(True)
            raise TransientError("Throttled", "Resource Graph said 429", None, 0.1, throttled=True)
        second = parts.step("second", lambda: reads.append("second") or 2)
        return {m: {"sum": first + second} for m, _ in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    _until_interrupted(
        fleet_store, fleet, "a", run
    )  # waits out the gathering, then the run is throttled once
    assert _until_done(fleet_store, fleet, "a", run) == {"sum": 3}
    assert reads == ["first", "second"]  # "first" was not read again


def test_a_run_whose_connection_drops_is_paused_and_resumed_not_failed(
    fleet_store: FleetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection reset (Azurite under load did it in the bench) used to fail the generation, and
    every member then discovered alone."""
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 0.0)  # the runner's retry goes to the queue
    from azure.core.exceptions import ServiceResponseError

    reads: list[str] = []
    dropped: list[bool] = []

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        first = parts.step("first", lambda: reads.append("first") or 1)
        if not dropped:
            dropped.append(True)
            raise ServiceResponseError("Connection aborted: Connection reset by peer")
        return {m: {"first": first} for m, _ in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    interrupted = _until_interrupted(fleet_store, fleet, "a", run)
    assert interrupted.code == "FleetDiscoveryInterrupted" and interrupted.throttled
    gens, _ = fleet_store.state(fleet, "snapshot", "a")
    assert gens[max(gens)]["Status"] == "Paused"
    assert _until_done(fleet_store, fleet, "a", run) == {"first": 1}  # not None: no discovering alone
    assert reads == ["first"]


def test_a_runs_independent_reads_go_side_by_side_and_a_throttle_keeps_those_that_finished(
    fleet_store: FleetStore,
) -> None:
    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    together = threading.Barrier(3, timeout=10)  # each read waits for the other two: only side by side
    reads: list[str] = []

    def read(name: str, throttled: bool = False) -> Any:
        reads.append(name)
        together.wait()
        if throttled:
            raise TransientError("RateLimiting", "Resource Graph said 429", None, 1.0, throttled=True)
        return {"of": name}

    from shared.store import StoreStats

    fleet_store.stats = stats = StoreStats()
    parts = Parts(fleet_store, fleet, "discovery", 1)
    before = dict(stats.counts)
    with pytest.raises(TransientError):
        parts.steps({"a": lambda: read("a"), "b": lambda: read("b"), "c": lambda: read("c", throttled=True)})
    # each stored read is a heartbeat (a long run is not taken over), in the read's own transaction
    assert fleet_store.table.get_entity(fleet, "g|discovery|000001")["Beat"]
    spent = {k: n - before.get(k, 0) for k, n in stats.counts.items() if n != before.get(k, 0)}
    # a and b: one transaction each, no heartbeat of its own (the table's creation aside: it is new)
    assert spent.get("table.transaction") == 2 and "table.update" not in spent, spent
    resumed = Parts(fleet_store, fleet, "discovery", 1)  # the run's next visit: a and b were kept
    assert sorted(resumed.done) == ["a", "b"]
    again = resumed.steps({"a": lambda: read("a"), "b": lambda: read("b"), "c": lambda: {"of": "c"}})
    assert again == {"a": {"of": "a"}, "b": {"of": "b"}, "c": {"of": "c"}}
    assert sorted(reads) == ["a", "b", "c"]  # nothing read twice


def test_a_members_result_comes_with_its_state_query_and_one_too_big_for_its_row_from_blob_rows(
    fleet_store: FleetStore,
) -> None:
    import collections

    big = {"rows": ["x" * 1000] * 400}  # ~400 KB of JSON: more than a member row holds

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        return {m: (big if m == "b" else {"for": m}) for m, _ in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    threads = [threading.Thread(target=_until_done, args=(fleet_store, fleet, m, run)) for m in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    class Counted:
        def __init__(self) -> None:
            self.counts: collections.Counter[str] = collections.Counter()

        def add(self, name: str, n: int = 1) -> None:
            self.counts[name] += n

    fleet_store.stats = counted = Counted()
    assert shared_result(fleet_store, fleet, "snapshot", "a", {"m": "a"}, run) == {"for": "a"}
    assert counted.counts == {"table.query": 1}  # the state query alone: the result is in the row
    counted.counts.clear()
    assert shared_result(fleet_store, fleet, "snapshot", "b", {"m": "b"}, run) == big
    assert counted.counts == {"table.query": 2}  # and the blob rows' query


def test_a_run_ahead_answers_its_members_at_their_first_visit_and_resumes_after_a_throttle(
    fleet_store: FleetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``open_ahead`` / ``run_ahead`` (a decommission's ``starts`` step): members joined and run before
    they come. A throttled run says how long to wait and is Paused, its reads kept; run again, it
    resumes from them. Each member then gets its result at its first visit, without joining or
    waiting, and a member that came while it was Paused waits for it (on the queue here:
    ``INLINE_WAIT`` 0)."""
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 0.0)
    reads: list[str] = []

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        first = parts.step("first", lambda: reads.append("first") or 1)
        if reads.count("throttled") == 0:
            reads.append("throttled")
            raise TransientError("Throttled", "Resource Graph said 429", None, 1.0, throttled=True)
        return {m: {"for": d["m"], "first": first} for m, d in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    members = [("a", {"m": "a"}), ("b", {"m": "b"})]
    n = fleet_discovery.open_ahead(fleet_store, fleet, "snapshot", members)
    assert n == 1
    assert fleet_discovery.run_ahead(fleet_store, fleet, "snapshot", n, "a", run) == 1.0
    generation = fleet_store.generation(fleet, "snapshot", 1)
    assert generation["Status"] == "Paused" and generation["Ahead"] is True
    with pytest.raises(TransientError) as waits:  # came while it was paused: waits (its Retry-After)
        shared_result(fleet_store, fleet, "snapshot", "b", {"m": "b"}, run)
    assert waits.value.code == "FleetDiscoveryRunning"
    left = fleet_discovery.run_ahead(fleet_store, fleet, "snapshot", n, "a", run)  # not before it either
    assert left is not None and 0 < left <= 1.0 and reads == ["first", "throttled"]
    time.sleep(left + 0.05)
    assert fleet_discovery.run_ahead(fleet_store, fleet, "snapshot", n, "a", run) is None
    assert fleet_store.generation(fleet, "snapshot", 1)["Status"] == "Done"
    assert reads == ["first", "throttled"]  # "first" read once across the two runs
    for member in ("b", "a"):  # neither raises (no wait) nor runs anything
        assert shared_result(fleet_store, fleet, "snapshot", member, {"m": member}, run) == {
            "for": member,
            "first": 1,
        }
    assert reads == ["first", "throttled"]
    assert fleet_discovery.run_ahead(fleet_store, fleet, "snapshot", n, "a", run) is None  # over: nothing


def test_a_run_ahead_throttled_for_long_is_resumed_at_a_members_visit_and_a_late_member_runs_its_own(
    fleet_store: FleetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run ahead left Paused (a throttle longer than ``AHEAD_WAIT``: the ``starts`` step gives it up)
    is resumed at a member's visit once the throttle's Retry-After is over (not before: that would
    spend the quota again; members wait on the queue here, ``INLINE_WAIT`` 0).
    A member that comes more than ``AHEAD_FRESH`` after the run began does not take its answer (read
    before that member's step began): it joins a generation of its own."""
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 0.0)
    runs: list[list[str]] = []

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        runs.append([m for m, _ in members])
        if len(runs) == 1:
            raise TransientError("Throttled", "Resource Graph said 429", None, 1.0, throttled=True)
        return {m: {"for": m, "run": len(runs)} for m, _ in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    n = fleet_discovery.open_ahead(fleet_store, fleet, "snapshot", [("a", {}), ("b", {})])
    assert n == 1 and fleet_discovery.run_ahead(fleet_store, fleet, "snapshot", n, "a", run) == 1.0
    assert fleet_store.generation(fleet, "snapshot", 1)["Status"] == "Paused" and len(runs) == 1
    for member in ("b", "a"):  # neither before the throttle's Retry-After
        with pytest.raises(TransientError) as waits:
            shared_result(fleet_store, fleet, "snapshot", member, {}, run)
        assert waits.value.code == "FleetDiscoveryRunning" and len(runs) == 1
    time.sleep(1.1)
    assert shared_result(fleet_store, fleet, "snapshot", "a", {}, run) == {"for": "a", "run": 2}
    assert shared_result(fleet_store, fleet, "snapshot", "b", {}, run) == {"for": "b", "run": 2}

    monkeypatch.setattr(fleet_discovery, "AHEAD_FRESH", 0.0)
    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    runs.clear()
    runs.append(["(the first run's throttle is spent)"])
    n = fleet_discovery.open_ahead(fleet_store, fleet, "snapshot", [("a", {}), ("b", {})])
    # a run ahead no member would take any more is not run at all
    assert n == 1 and fleet_discovery.run_ahead(fleet_store, fleet, "snapshot", n, "a", run) is None
    assert runs[1:] == []
    assert shared_result(fleet_store, fleet, "snapshot", "b", {}, run) == {"for": "b", "run": 2}
    assert runs[1:] == [["b"]]  # the late member's own generation, b alone


def test_a_short_throttle_is_waited_out_in_the_runners_thread_and_a_waiting_member_resumes_a_paused_run(
    fleet_store: FleetStore,
) -> None:
    """A run paused for a short Retry-After (Resource Graph's quota) goes on in its runner's thread,
    from the reads it kept, and answers at that visit: sent to the queue, its retry came ~25 s late
    behind the 300x10 bench's backlog, and its members ~60 s after that. A second throttle in the
    same visit goes to the queue. A member waiting for a paused run whose owner is not back when it
    may go on runs it itself (one claim wins)."""
    reads: list[str] = []

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        first = parts.step("first", lambda: reads.append("first") or 1)
        if reads.count("throttled") < 1:
            reads.append("throttled")
            raise TransientError("Throttled", "Resource Graph said 429", None, 0.3, throttled=True)
        second = parts.step("second", lambda: reads.append("second") or 2)
        return {m: {"sum": first + second} for m, _ in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    assert _until_done(fleet_store, fleet, "a", run) == {"sum": 3}
    assert reads == ["first", "throttled", "second"]  # one visit: no TransientError but the waits

    throttles: list[str] = []

    def twice(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        if len(throttles) < 2:
            throttles.append("throttled")
            raise TransientError("Throttled", "Resource Graph said 429", None, 0.3, throttled=True)
        return {m: {"for": m} for m, _ in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    n = fleet_discovery.open_ahead(fleet_store, fleet, "snapshot", [("a", {}), ("b", {})])
    assert n == 1 and fleet_discovery.run_ahead(fleet_store, fleet, "snapshot", n, "a", twice) == 0.3
    # b, not the owner, waits in its thread until the run may go on, runs it (throttled a second
    # time: waited out once more in its thread) and answers; the owner then reads its answer
    assert shared_result(fleet_store, fleet, "snapshot", "b", {}, twice) == {"for": "b"}
    assert throttles == ["throttled", "throttled"]
    assert shared_result(fleet_store, fleet, "snapshot", "a", {}, twice) == {"for": "a"}


def test_the_owner_waits_out_a_short_gathering_in_its_thread_and_runs_it(
    fleet_store: FleetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No retry on the queue for the owner (it came 30-50 s late behind steps waiting for their write
    budget): its one visit gathers, runs and answers, with the members that joined meanwhile (who
    wait on the queue here: ``INLINE_WAIT`` 0)."""
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 0.0)
    runs: list[list[str]] = []

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        runs.append([m for m, _ in members])
        return {m: {"for": m} for m, _ in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    answers: dict[str, Any] = {}
    owner = threading.Thread(
        target=lambda: answers.update(a=shared_result(fleet_store, fleet, "snapshot", "a", {}, run))
    )
    owner.start()
    _eventually(lambda: bool(fleet_store.state(fleet, "snapshot", "b")[0]))  # open: b joins while a waits
    with pytest.raises(TransientError) as b_waits:
        shared_result(fleet_store, fleet, "snapshot", "b", {}, run)
    assert b_waits.value.code == "FleetDiscoveryRunning"
    owner.join()
    assert answers == {"a": {"for": "a"}}  # answered in the one visit, no TransientError
    assert runs == [["a", "b"]]
    assert shared_result(fleet_store, fleet, "snapshot", "b", {}, run) == {"for": "b"}


def test_a_member_waits_in_its_thread_for_a_run_about_to_end_and_on_the_queue_for_a_longer_one(
    fleet_store: FleetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member that joins a gathering waits out the gathering and the run in its own thread, within
    ``INLINE_WAIT``, and answers at that visit (no retry on the queue, no handle kept); a run that
    outlasts it sends the member to the queue with its handle kept for the wake."""
    release = threading.Event()

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        release.wait(10)
        return {m: {"for": m} for m, _ in members}

    monkeypatch.setattr(fleet_discovery, "GATHER_SECONDS", {"snapshot": 1.5})
    monkeypatch.setattr(fleet_discovery, "RUN_GUESS", 0.3)
    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    answers: dict[str, Any] = {}
    owner = threading.Thread(
        target=lambda: answers.update(a=shared_result(fleet_store, fleet, "snapshot", "a", {}, run))
    )
    owner.start()
    _eventually(lambda: bool(fleet_store.state(fleet, "snapshot", "b")[0]))  # open: b joins while a gathers
    threading.Timer(2.0, release.set).start()  # the run ends ~0.5 s after the gathering
    assert shared_result(fleet_store, fleet, "snapshot", "b", {}, run, lambda handle: True) == {"for": "b"}
    owner.join()
    assert answers == {"a": {"for": "a"}}
    row = fleet_store.table.get_entity(fleet, "m|snapshot|b")
    assert row["Gen"] == 1 and not row.get("Wake")  # a's generation, joined; no handle kept
    assert fleet_store.generation(fleet, "snapshot", 2) is None

    release.clear()  # a gathering and run longer than the member may wait in its thread
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 1.0)
    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    owner = threading.Thread(target=lambda: shared_result(fleet_store, fleet, "snapshot", "a", {}, run))
    owner.start()
    _eventually(lambda: bool(fleet_store.state(fleet, "snapshot", "b")[0]))
    with pytest.raises(TransientError) as waits:
        shared_result(fleet_store, fleet, "snapshot", "b", {}, run, lambda handle: True)
    assert waits.value.code == "FleetDiscoveryRunning" and waits.value.on_scheduled is not None
    assert fleet_store.table.get_entity(fleet, "m|snapshot|b")["Gen"] == 1
    release.set()
    owner.join()


def test_a_member_that_waits_in_its_thread_through_a_long_run_then_waits_on_the_queue(
    fleet_store: FleetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member whose generation's run is still going after ``INLINE_WAIT`` seconds of waiting in its
    thread (a second at a time) waits on the queue, its handle kept: it neither runs out of turns
    into doing its own discovery (``None``) nor runs the generation."""
    release = threading.Event()
    runs: list[list[str]] = []

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        runs.append([m for m, _ in members])
        release.wait(20)
        return {m: {"for": m} for m, _ in members}

    monkeypatch.setattr(fleet_discovery, "GATHER_SECONDS", {"snapshot": 1.0})
    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    owner = threading.Thread(target=lambda: shared_result(fleet_store, fleet, "snapshot", "a", {}, run))
    owner.start()
    _eventually(lambda: bool(fleet_store.state(fleet, "snapshot", "b")[0]))
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 0.0)
    with pytest.raises(TransientError):  # b joins, and waits on the queue
        shared_result(fleet_store, fleet, "snapshot", "b", {}, run)
    _eventually(lambda: bool(runs), tries=200)  # the run has begun (and holds)
    slept: list[float] = []
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 6.0)
    monkeypatch.setattr(fleet_discovery, "_sleep", slept.append)  # the waits, not their time
    try:
        with pytest.raises(TransientError) as waits:
            shared_result(fleet_store, fleet, "snapshot", "b", {}, run, lambda handle: True)
    finally:
        release.set()
        owner.join()
    assert waits.value.code == "FleetDiscoveryRunning" and waits.value.on_scheduled is not None
    assert slept and sum(slept) < 6.0 and runs == [["a", "b"]], (slept, runs)


def test_a_run_ahead_wakes_every_member_that_waited_for_it_its_owner_too(
    fleet_store: FleetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``starts`` step runs a run ahead in its first member's name; that member, coming while it
    runs, waits for it like the others, and is woken with them (it was skipped as the runner)."""
    release = threading.Event()

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        release.wait(20)
        return {m: {"for": m} for m, _ in members}

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    n = fleet_discovery.open_ahead(fleet_store, fleet, "snapshot", [("a", {}), ("b", {})])
    assert n == 1
    woken: list[str] = []

    def wake(handle: str) -> bool:
        woken.append(handle)
        return True

    starts = threading.Thread(
        target=lambda: fleet_discovery.run_ahead(fleet_store, fleet, "snapshot", 1, "a", run, wake)
    )
    starts.start()
    _eventually(lambda: fleet_store.generation(fleet, "snapshot", 1)["Status"] == "Running", tries=200)
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 0.0)  # they wait on the queue, handles kept
    try:
        for member in ("a", "b"):
            with pytest.raises(TransientError) as waits:
                shared_result(fleet_store, fleet, "snapshot", member, {}, run, wake)
            assert waits.value.code == "FleetDiscoveryRunning" and waits.value.on_scheduled is not None
            waits.value.on_scheduled(f"handle-{member}")
    finally:
        release.set()
        starts.join()
    assert sorted(woken) == ["handle-a", "handle-b"]
    assert shared_result(fleet_store, fleet, "snapshot", "a", {}, run, wake) == {"for": "a"}


def test_a_shorter_result_merged_over_a_longer_one_is_read_whole(fleet_store: FleetStore) -> None:
    """Two runs of one generation (a takeover) may both write a member's result: a merge keeps what
    it does not name, so the shorter one must name every chunk (it left the longer one's tail, and
    the member's step failed on the JSON at every delivery)."""
    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    fleet_store.join(fleet, "snapshot", 1, "a", {})
    longer, shorter = {"rows": ["x" * 1000] * 100}, {"rows": ["y"]}
    fleet_store.put_results(fleet, "snapshot", 1, {"a": longer})
    fleet_store.put_results(fleet, "snapshot", 1, {"a": shorter})
    _, row = fleet_store.state(fleet, "snapshot", "a")
    assert fleet_store.result_of(fleet, "snapshot", 1, row) == shorter


def test_a_write_that_meets_table_not_found_after_another_thread_created_it_writes_again(
    engine_settings: Settings,
) -> None:
    """Threads racing on the table's first use: one creates it and sets the flag while another's write
    was already answered TableNotFound. That write must create (answer "exists") and write again,
    not fail its step (seen in a decommission of 8 identities on 8 threads). The flag is set here as
    the other thread would have set it."""
    store = FleetStore.for_settings(engine_settings)
    store._created = True  # another thread's create came first; this thread's write still failed
    store.link("move-1", "fleet-1")
    assert store.fleet_of("move-1") == "fleet-1"


def test_a_value_too_big_for_one_transaction_is_written_over_several_and_read_whole(
    fleet_store: FleetStore,
) -> None:
    """A Resource Graph answer of thousands of resources (their properties projected) is more than one
    entity-group transaction carries (4 MB): written over several, its first row last."""
    fleet = f"f-{uuid.uuid4().hex[:8]}"
    rows = [{"id": f"/subscriptions/s/r/{i}", "propertiesText": "x" * 2_000} for i in range(3_000)]
    fleet_store.put_blobs(fleet, {"p|big": rows, "p|small": {"a": 1}})
    assert fleet_store.get_blob(fleet, "p|big") == rows
    assert fleet_store.get_blob(fleet, "p|small") == {"a": 1}
    stored = list(fleet_store.table.query_entities(f"PartitionKey eq '{fleet}'"))
    assert len(stored) > 12  # ~6 MB of text in rows of 360,000 characters: more than one transaction
    # cut short (its first row, written last, missing): absent, not half a value
    fleet_store.table.delete_entity(fleet, "p|big|0000")
    assert fleet_store.get_blob(fleet, "p|big") is None


def test_a_member_reads_the_recent_generations_and_its_own_not_the_whole_series(
    fleet_store: FleetStore,
) -> None:
    fleet = f"f-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC)
    newest = fleet_discovery.WINDOW + 6
    for n in range(1, newest + 1):
        assert fleet_store.create_generation(fleet, "discovery", n, f"owner-{n}", start)
    fleet_store.join(fleet, "discovery", 2, "old", {})
    gens, mine = fleet_store.state(fleet, "discovery", "old")  # a fresh process: the whole series
    assert set(gens) == set(range(1, newest + 1)) and mine is not None and int(mine["Gen"]) == 2
    gens, mine = fleet_store.state(fleet, "discovery", "old")  # then: WINDOW below the newest seen
    assert set(gens) == {2, *range(newest - fleet_discovery.WINDOW, newest + 1)}, sorted(gens)
    assert fleet_store.create_generation(fleet, "discovery", newest + 1, "owner-new", start)
    gens, _ = fleet_store.state(fleet, "discovery", "new")
    # one created elsewhere meanwhile is among them
    assert set(gens) == set(range(newest - fleet_discovery.WINDOW, newest + 2)), sorted(gens)


def test_a_retried_cleanup_reads_the_source_again_not_its_first_rounds_answer(
    emulated_service: MoveService, emu: str
) -> None:
    """A fleet move's cleanup fails after its re-read (a delete refused); access is granted to the
    source; a person retries. The retry is a new round (epoch): its re-read is a new member of a new
    generation, so it finds the new access and copies it before anything is deleted, instead of
    reusing the first round's answer, whatever its age."""
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    sub = str(uuid.uuid4())
    identities = _estate(emu, [sub], per_sub=1)
    service = emulated_service
    event_id = _decommission(service, [sub], autoCommit=True, acknowledgeActionsRequired=True)
    ((identity_id, identity),) = identities.items()
    move_id = move_id_for(event_id, identity_id)
    principal = identity["properties"]["principalId"]
    refuse = [{"method": "DELETE", "pathPattern": "/providers/Microsoft.Authorization/roleAssignments/",
               "status": 403, "times": 100}]  # fmt: skip
    httpx.post(f"{emu}/_emulator/faults", json=refuse).raise_for_status()
    drain(service, timeout=240)
    failed = service.get(move_id)
    assert (failed["status"], failed["phase"]) == ("Failed", "cleanup"), failed.get("error")
    httpx.delete(f"{emu}/_emulator/faults").raise_for_status()
    with httpx.Client(base_url=emu, headers=OWNER, timeout=30) as arm:
        put_group(arm, "rg-before-retry", SOURCE, sub)
        _assign(arm, f"/subscriptions/{sub}/resourceGroups/rg-before-retry", principal, CONTRIBUTOR)
    service.retry(move_id)
    drain(service, timeout=240)
    done = service.get(move_id)
    assert done["status"] == "Completed", done.get("error")
    assert [w for w in done["plan"]["warnings"] if w["code"] == "SourceChangedBeforeCleanup"]
    scopes = _assigned_scopes(emu, sub, done["target"]["principalId"])
    assert any(s.endswith("/rg-before-retry") for s in scopes), scopes


def test_a_snapshot_waiting_for_its_fleets_discovery_keeps_and_reads_no_progress(
    emulated_service: MoveService, emu: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decommission's snapshot ends early to wait for its fleet's run (at least the gathering): not a
    throttle, so it keeps nothing of its own read (``snapshotProgress``), and with its share ready it
    reads nothing back either: no storage for it at all."""
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 0.0)  # the snapshot waits on the queue
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    sub = str(uuid.uuid4())
    identities = _estate(emu, [sub], per_sub=2)
    service = emulated_service
    service.store.ensure_tables()
    used: list[tuple[str, str]] = []
    get_cached, put_cached = service.store.get_cached, service.store.put_cached

    def get(key: str) -> Any:
        used.append(("get", key))
        return get_cached(key)

    def put(key: str, value: Any, now: str) -> None:
        used.append(("put", key))
        put_cached(key, value, now)

    waits: list[str] = []
    send = service.queue.send

    def sending(message: WorkMessage, delay_seconds: float = 0) -> str:
        if message.phase == "snapshot" and delay_seconds > 0:
            waits.append(message.move_id)  # the engine's re-send of a step that waited
        return send(message, delay_seconds)

    service.store.get_cached = get  # type: ignore[method-assign]
    service.store.put_cached = put  # type: ignore[method-assign]
    service.queue.send = sending  # type: ignore[method-assign]
    event_id = _decommission(service, [sub], ahead=False)
    drain(service, timeout=120, handler=snapshot_phase_only(service))
    for identity_id in identities:
        assert service.get(move_id_for(event_id, identity_id))["status"] == "AwaitingCommit"
    assert waits, "no snapshot waited for the fleet's run"
    assert [u for u in used if u[1].startswith("snapshotProgress|")] == []


# ---- waking a waiting member through its own retry message ----------------------------------------
class Clock:
    """Fleet discovery's clock (``shared.fleet_discovery._now``), moved by the test, not by time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fleet_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Fake time for the tests that follow the owner's wait on the queue (a gathering longer than
    ``INLINE_GATHER``); ``test_the_owner_waits_out_a_short_gathering_in_its_thread_and_runs_it``
    follows the in-thread one."""
    clock = Clock()
    monkeypatch.setattr(fleet_discovery, "_now", clock)
    monkeypatch.setattr(fleet_discovery, "INLINE_GATHER", 0.0)
    monkeypatch.setattr(fleet_discovery, "INLINE_WAIT", 0.0)  # members wait on the queue, not in-thread
    return clock


def _claim_token(service: MoveService, move_id: str, phase: str) -> str:
    move = service.store.get_move(move_id)
    assert move is not None
    return str(move.phase_entry(phase)["step"]["token"])


def test_a_waiting_move_is_woken_by_the_run_through_its_own_retry_message(
    emulated_service: MoveService, emu: str, fleet_clock: Clock
) -> None:
    """Two moves of a decommission: one creates the snapshot generation and waits out its gathering,
    the other joins and waits for the run. When the run is done, the waiting move's step has exactly
    one message, visible at once: the very retry the engine sent for it (same message, same token as
    the step's claim), not a second message that takes the step over beside it."""
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    sub = str(uuid.uuid4())
    identities = _estate(emu, [sub], per_sub=2)
    service = emulated_service
    service.store.ensure_tables()
    queue = service.queue.client
    event_id = _decommission(service, [sub], ahead=False)
    moves = {move_id_for(event_id, i) for i in identities}

    # the fleet's clock stands still: whoever comes second joins the first one's generation
    while got := list(queue.receive_messages(max_messages=16, visibility_timeout=60)):
        for message in got:
            service.handle_message(message.content, message.dequeue_count or 1)
            queue.delete_message(message)
    store = FleetStore.for_settings(service.settings)
    fleet = store.fleet_of(next(iter(moves)))
    assert fleet is not None
    generation = store.table.get_entity(fleet, "g|discovery|000001")
    owner = str(generation["Owner"]).split("|")[0]
    (waiting,) = moves - {owner}
    rows = list(
        store.table.query_entities(f"PartitionKey eq '{fleet}' and RowKey ge 'm|' and RowKey lt 'm}}'")
    )
    assert {int(r["Gen"]) for r in rows} == {1} and len(rows) == 2, rows
    handle = next(str(r["Wake"]) for r in rows if str(r["RowKey"]).split("|")[2] == waiting)
    assert not any(r.get("Wake") for r in rows if str(r["RowKey"]).split("|")[2] == owner)  # no wake
    token = _claim_token(service, waiting, "snapshot")

    # the gathering is over: the owner's retry (seconds away) runs the generation
    fleet_clock.now += timedelta(seconds=10)
    for _ in range(300):
        got = list(queue.receive_messages(max_messages=1, visibility_timeout=60))
        if not got:
            time.sleep(0.1)
            continue
        body = json.loads(got[0].content)
        assert body["moveId"] == owner, body  # the waiting move's retry is not due for 30 s
        service.handle_message(got[0].content, got[0].dequeue_count or 1)
        queue.delete_message(got[0])
        if store.table.get_entity(fleet, "g|discovery|000001")["Status"] == "Done":
            break
    else:
        raise AssertionError("the owner never ran the generation")

    visible = [json.loads(m.content) | {"id": m.id} for m in queue.peek_messages(max_messages=32)]
    mine = [m for m in visible if m["moveId"] == waiting]
    assert len(mine) == 1, visible
    assert mine[0]["token"] == token and mine[0]["attempt"] == 0, (mine, token)
    assert mine[0]["id"] == handle.split(":")[0]  # the retry itself, made visible: no second message

    # it runs the step it was sent for (no takeover: the claim is still its own) and nothing is left
    while got := list(queue.receive_messages(max_messages=16, visibility_timeout=60)):
        for message in got:
            service.handle_message(message.content, message.dequeue_count or 1)
            queue.delete_message(message)
    assert all(service.get(m)["status"] == "AwaitingCommit" for m in moves)
    assert _claim_token(service, waiting, "snapshot") == token
    assert queue.get_queue_properties().approximate_message_count == 0


def test_a_wake_whose_message_was_delivered_or_deleted_is_harmless(
    fleet_store: FleetStore, engine_service: MoveService, fleet_clock: Clock
) -> None:
    """Members whose retry was already delivered (its pop receipt changed: 400) or deleted (404) are
    not woken (``wake`` answers False, never raises) and the run completes all the same."""
    queue = engine_service.queue
    fleet = f"fleet-{uuid.uuid4().hex[:8]}"

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        return {m: {"for": m} for m, _ in members}

    woken: dict[str, bool] = {}

    def wake(handle: str) -> bool:
        woken[handle] = queue.wake(handle)
        return woken[handle]

    with pytest.raises(TransientError) as owner_waits:
        shared_result(fleet_store, fleet, "snapshot", "a", {}, run, wake)
    assert owner_waits.value.on_scheduled is None  # the owner's retry comes when the gathering ends
    handles = {}
    for member in ("delivered", "deleted"):
        with pytest.raises(TransientError) as waits:
            shared_result(fleet_store, fleet, "snapshot", member, {}, run, wake)
        assert waits.value.on_scheduled is not None
        handles[member] = queue.send(WorkMessage(member, "snapshot"))  # what the engine does
        waits.value.on_scheduled(handles[member])
    (delivered,) = queue.client.receive_messages(max_messages=1, visibility_timeout=60)
    (deleted,) = queue.client.receive_messages(max_messages=1, visibility_timeout=60)
    assert {delivered.id, deleted.id} == {h.split(":")[0] for h in handles.values()}
    if delivered.id != handles["delivered"].split(":")[0]:
        delivered, deleted = deleted, delivered
    queue.client.delete_message(deleted)

    fleet_clock.now += timedelta(seconds=10)
    assert shared_result(fleet_store, fleet, "snapshot", "a", {}, run, wake) == {"for": "a"}
    assert woken == {handles["delivered"]: False, handles["deleted"]: False}
    assert fleet_store.table.get_entity(fleet, "g|snapshot|000001")["Status"] == "Done"
    assert shared_result(fleet_store, fleet, "snapshot", "delivered", {}, run, wake) == {"for": "delivered"}
    assert shared_result(fleet_store, fleet, "snapshot", "deleted", {}, run, wake) == {"for": "deleted"}


def test_a_member_woken_before_its_generation_is_done_waits_again_with_a_new_handle(
    fleet_store: FleetStore, fleet_clock: Clock
) -> None:
    """The run is throttled (Paused) while a member waits; that member comes back (its own fallback,
    or a wake kept from an earlier wait) and simply waits again; the run, when done, wakes the handle
    it kept last."""
    throttled: list[bool] = []

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        if not throttled:
            throttled.append(True)
            raise TransientError("Throttled", "Resource Graph said 429", None, 1.0, throttled=True)
        return {m: {"for": m} for m, _ in members}

    woken: list[str] = []

    def wake(handle: str) -> bool:
        woken.append(handle)
        return True

    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    with pytest.raises(TransientError):
        shared_result(fleet_store, fleet, "snapshot", "a", {}, run, wake)
    with pytest.raises(TransientError) as waits:
        shared_result(fleet_store, fleet, "snapshot", "b", {}, run, wake)
    assert waits.value.on_scheduled is not None
    waits.value.on_scheduled("first")
    fleet_clock.now += timedelta(seconds=10)
    with pytest.raises(TransientError) as paused:
        shared_result(fleet_store, fleet, "snapshot", "a", {}, run, wake)
    assert paused.value.code == "Throttled"
    assert fleet_store.table.get_entity(fleet, "g|snapshot|000001")["Status"] == "Paused"
    assert woken == []  # not Done: nobody woken

    with pytest.raises(TransientError) as again:
        shared_result(fleet_store, fleet, "snapshot", "b", {}, run, wake)
    assert again.value.code == "FleetDiscoveryRunning" and again.value.on_scheduled is not None
    again.value.on_scheduled("second")
    assert fleet_store.table.get_entity(fleet, "m|snapshot|b")["Wake"] == "second"
    fleet_clock.now += timedelta(seconds=2)  # past the throttle's Retry-After: the owner runs it again
    assert shared_result(fleet_store, fleet, "snapshot", "a", {}, run, wake) == {"for": "a"}
    assert woken == ["second"]
    assert shared_result(fleet_store, fleet, "snapshot", "b", {}, run, wake) == {"for": "b"}


def test_the_engine_gives_on_scheduled_the_handle_of_its_retry_and_wake_makes_it_visible_now(
    engine_service: MoveService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A step waiting for someone: the engine sends its retry with the delay, hands its handle to the
    error's ``on_scheduled``, and ``wake(handle)`` makes that message receivable at once, with the
    step's token and attempt. A callback that fails does not fail the step: its retry is sent."""
    service = engine_service
    handles: list[str] = []
    callback: list[Any] = [handles.append]

    def waiting(ctx: Any) -> Any:
        raise TransientError("Waiting", "for a run", None, 600.0, throttled=True, on_scheduled=callback[0])

    monkeypatch.setattr("activities.snapshot.run", waiting)
    identity = f"/subscriptions/{uuid.uuid4()}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-1"
    move_id = service.start({"sourceIdentityId": identity, "targetRegion": TARGET})["id"]
    queue = service.queue.client
    (first,) = queue.receive_messages(max_messages=1, visibility_timeout=60)
    service.handle_message(first.content, first.dequeue_count or 1)
    queue.delete_message(first)
    assert len(handles) == 1
    assert not list(queue.receive_messages(visibility_timeout=60))  # the retry waits out its 600 s

    assert service.queue.wake(handles[0]) is True
    (woken,) = queue.receive_messages(max_messages=1, visibility_timeout=60)
    assert woken.id == handles[0].split(":")[0]
    body = WorkMessage.from_json(woken.content)
    assert (body.move_id, body.token, body.attempt) == (
        move_id,
        _claim_token(service, move_id, "snapshot"),
        0,
    )
    assert service.queue.wake(handles[0]) is False  # delivered: its pop receipt changed

    def broken(handle: str) -> None:
        raise RuntimeError("the fleet table is down")

    callback[0] = broken
    service.handle_message(woken.content, woken.dequeue_count or 1)
    queue.delete_message(woken)
    assert service.queue.wake(handles[0]) is False  # deleted
    assert service.get(move_id)["status"] in ("Pending", "Running")
    assert queue.get_queue_properties().approximate_message_count == 1  # its retry, waiting
    assert "could not keep the retry's handle" in caplog.text


def test_a_member_first_looks_when_the_fleets_latest_runs_were_done() -> None:
    """``_run_guess``: the median of the latest runs' time from gathering's end to Done, plus a margin,
    within bounds; runs ahead (no gathering) and unfinished runs say nothing."""
    at = datetime(2026, 12, 2, tzinfo=UTC)

    def gen(took: float, status: str = "Done", ahead: bool = False) -> dict[str, Any]:
        return {
            "Status": status,
            "StartAt": at.isoformat(),
            "Ended": (at + timedelta(seconds=took)).isoformat(),
            "Ahead": ahead,
        }

    guess, margin = fleet_discovery._run_guess, fleet_discovery.GUESS_MARGIN
    assert guess({}) == fleet_discovery.RUN_GUESS
    assert guess({1: gen(9.0, ahead=True), 2: gen(0.9, status="Running")}) == fleet_discovery.RUN_GUESS
    runs = {n: gen(took) for n, took in enumerate([3.0, 1.2, 1.9, 1.4, 2.2, 1.6], start=1)}
    assert guess(runs) == pytest.approx(1.6 + margin)  # the latest five: 1.2 1.4 1.6 1.9 2.2
    assert guess({1: gen(0.1)}) == fleet_discovery.GUESS_BOUNDS[0]
    assert guess({1: gen(30.0)}) == fleet_discovery.GUESS_BOUNDS[1]
