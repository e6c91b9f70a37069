"""Control API and behaviour under load: throttling, faults, latency, request log, reset,
concurrency, start-up and the loopback rule."""

from __future__ import annotations

import statistics
import threading
import time

import httpx

from emulator.__main__ import main
from tests.plugins.emulator import ARM_API, SUBSCRIPTION, configure, put_group, put_identity, rg_path

RGS = f"/subscriptions/{SUBSCRIPTION}/resourcegroups"


def test_throttling_429_with_retry_after_and_remaining_headers(emulator_arm: httpx.Client) -> None:
    configure(
        emulator_arm,
        throttling={"enabled": True, "timeScale": 1, "reads": {"capacity": 5, "refillPerSecond": 1}},
    )
    remaining = [
        int(emulator_arm.get(RGS, params=ARM_API).headers["x-ms-ratelimit-remaining-subscription-reads"])
        for _ in range(5)
    ]
    assert remaining == [4, 3, 2, 1, 0]
    throttled = emulator_arm.get(RGS, params=ARM_API)
    assert throttled.status_code == 429
    # ARM's own throttling code and wording (MicrosoftDocs/azure-docs #105248, #51431)
    error = throttled.json()["error"]
    assert error["code"] == "SubscriptionRequestsThrottled"
    assert error["message"].startswith(f"Number of 'read' requests for subscription '{SUBSCRIPTION.lower()}'")
    retry_after = int(throttled.headers["Retry-After"])
    assert retry_after >= 1 and int(throttled.headers["retry-after-ms"]) > 0
    assert f"Please try again after '{retry_after}' seconds" in error["message"]
    assert throttled.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    # writes have their own bucket
    assert (
        emulator_arm.put(rg_path("rg1"), params=ARM_API, json={"location": "westeurope"}).status_code == 201
    )
    # other subscriptions too
    assert (
        emulator_arm.get(
            "/subscriptions/33333333-3333-3333-3333-333333333333/resourcegroups", params=ARM_API
        ).status_code
        == 200
    )


def test_time_scale_refills_faster(emulator_arm: httpx.Client) -> None:
    configure(
        emulator_arm,
        throttling={"enabled": True, "timeScale": 100, "reads": {"capacity": 2, "refillPerSecond": 1}},
    )
    emulator_arm.get(RGS, params=ARM_API)
    emulator_arm.get(RGS, params=ARM_API)
    time.sleep(0.05)  # 0.05 s * 1/s * 100 = 5 tokens, capped at 2
    assert emulator_arm.get(RGS, params=ARM_API).status_code == 200
    configure(emulator_arm, throttling={"enabled": False})
    assert all(emulator_arm.get(RGS, params=ARM_API).status_code == 200 for _ in range(10))


def test_default_buckets_match_arm(emulator_arm: httpx.Client) -> None:
    config = emulator_arm.get("/_emulator/config").json()
    assert config["throttling"]["enabled"] is False
    assert config["throttling"]["reads"] == {"capacity": 250, "refillPerSecond": 25}
    assert config["throttling"]["writes"] == {"capacity": 200, "refillPerSecond": 10}
    assert config["throttling"]["deletes"] == {"capacity": 200, "refillPerSecond": 10}
    configure(emulator_arm, throttling={"enabled": True})
    d = emulator_arm.delete(rg_path("nope"), params=ARM_API)
    assert d.headers["x-ms-ratelimit-remaining-subscription-deletes"] == "199"


def test_config_rejects_unknown_keys_and_bad_values(emulator_arm: httpx.Client) -> None:
    assert emulator_arm.put("/_emulator/config", json={"throttle": True}).status_code == 400
    assert emulator_arm.put("/_emulator/config", json={"latencyMs": {"read": -1}}).status_code == 400
    assert emulator_arm.put("/_emulator/config", json={"throttling": {"timeScale": 0}}).status_code == 400


def test_faults_count_down_and_match_method_and_path(emulator_arm: httpx.Client) -> None:
    r = emulator_arm.post(
        "/_emulator/faults",
        json=[
            {
                "method": "PUT",
                "pathPattern": "userAssignedIdentities/",
                "status": 503,
                "times": 2,
                "retryAfter": 1,
            }
        ],
    )
    assert r.status_code == 200
    put_group(emulator_arm, "rg1")
    path = f"{rg_path('rg1')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
    first = emulator_arm.put(path, params={"api-version": "2024-11-30"}, json={"location": "westeurope"})
    assert (
        first.status_code == 503
        and first.json()["error"]["code"] == "ServiceUnavailable"
        and first.headers["Retry-After"] == "1"
    )
    assert (
        emulator_arm.put(
            path, params={"api-version": "2024-11-30"}, json={"location": "westeurope"}
        ).status_code
        == 503
    )
    assert (
        emulator_arm.put(
            path, params={"api-version": "2024-11-30"}, json={"location": "westeurope"}
        ).status_code
        == 201
    )
    emulator_arm.post(
        "/_emulator/faults",
        json=[
            {"method": "*", "pathPattern": "^/graph/", "status": 429, "rate": 1.0, "code": "TooManyRequests"}
        ],
    )
    graph = emulator_arm.get("/graph/v1.0/servicePrincipals")
    assert graph.status_code == 429 and "innerError" in graph.json()["error"]
    assert emulator_arm.delete("/_emulator/faults").status_code == 204
    assert emulator_arm.get("/graph/v1.0/servicePrincipals").status_code == 200
    never = emulator_arm.post("/_emulator/faults", json=[{"pathPattern": ".*", "status": 500, "rate": 0.0}])
    assert never.status_code == 200 and emulator_arm.get(RGS, params=ARM_API).status_code == 200


def test_latency_is_injected(emulator_arm: httpx.Client) -> None:
    configure(emulator_arm, latencyMs={"read": 150, "write": 0})
    started = time.perf_counter()
    emulator_arm.get(RGS, params=ARM_API)
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    put_group(emulator_arm, "rg1")
    assert time.perf_counter() - started < 0.15


def test_latency_does_not_serialise_requests(emulator_url: str, emulator_arm: httpx.Client) -> None:
    configure(emulator_arm, latencyMs={"read": 300, "write": 0})

    def read() -> None:
        httpx.get(f"{emulator_url}{RGS}", params=ARM_API, headers={"Authorization": "Bearer t"})

    threads = [threading.Thread(target=read) for _ in range(8)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started < 8 * 0.3 / 2  # slept outside the lock, so in parallel


def test_request_log_and_reset(emulator_arm: httpx.Client) -> None:
    put_identity(emulator_arm, "rg1", "id1")
    emulator_arm.get("/graph/v1.0/servicePrincipals")
    log = emulator_arm.get("/_emulator/requests").json()
    assert [(e["method"], e["status"]) for e in log] == [("PUT", 201), ("PUT", 201), ("GET", 200)]
    assert (
        log[0]["path"] == rg_path("rg1")
        and log[0]["query"] == "api-version=2021-04-01"
        and log[0]["time"].endswith("Z")
    )
    configure(emulator_arm, pageSize=7)
    assert emulator_arm.post("/_emulator/reset").status_code == 200
    assert emulator_arm.get("/_emulator/requests").json() == []
    assert emulator_arm.get("/_emulator/config").json()["pageSize"] == 100
    assert emulator_arm.get(RGS, params=ARM_API).json()["value"] == []
    reader = emulator_arm.get(
        "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
        params={"api-version": "2022-04-01"},
    )
    assert reader.status_code == 200  # built-ins survive reset


def test_many_client_threads(emulator_url: str, emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    errors: list[str] = []

    def worker(n: int) -> None:
        with httpx.Client(base_url=emulator_url, headers={"Authorization": "Bearer t"}) as client:
            for i in range(10):
                r = client.put(
                    f"{rg_path('rg1')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-{n}-{i}",
                    params={"api-version": "2024-11-30"},
                    json={"location": "westeurope"},
                )
                if r.status_code != 201:
                    errors.append(r.text)
                if client.get(f"{rg_path('rg1')}/resources", params=ARM_API).status_code != 200:
                    errors.append("list failed")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    listed = emulator_arm.get(
        f"{rg_path('rg1')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
        params={"api-version": "2024-11-30", "$top": "1000"},
    ).json()
    assert len(listed["value"]) == 160
    principals = {i["properties"]["principalId"] for i in listed["value"]}
    assert len(principals) == 160


def test_measure_get_time(emulator_arm: httpx.Client) -> None:
    """Printed, not asserted beyond a sanity bound: server time per GET and round trip."""
    ident = put_identity(emulator_arm, "rg1", "id1")
    server_us, round_trip = [], []
    for _ in range(300):
        started = time.perf_counter()
        r = emulator_arm.get(ident["id"], params={"api-version": "2024-11-30"})
        round_trip.append(time.perf_counter() - started)
        server_us.append(int(r.headers["x-ms-emulator-server-time-us"]))
    median_server = statistics.median(server_us)
    print(
        f"\nGET identity: server median {median_server} us, p95 {sorted(server_us)[284]} us; round trip median {statistics.median(round_trip) * 1000:.2f} ms"
    )
    assert median_server < 50_000


def test_refuses_non_loopback_hosts(capsys: object) -> None:
    assert main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert main(["--host", "8.8.8.8", "--port", "0"]) == 2
