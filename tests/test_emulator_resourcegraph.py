"""Azure Resource Graph: the KQL subset, paging, lag and quota (DESIGN.md "Discovery query")."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulator import kql
from tests.plugins.emulator import SUBSCRIPTION, configure, put_group, put_identity, rg_path
from tests.waiting import wait_until

ARG = "/providers/Microsoft.ResourceGraph/resources"
API = {"api-version": "2022-10-01"}


def query(client: httpx.Client, text: str, **options: object) -> httpx.Response:
    return client.post(
        ARG, params=API, json={"subscriptions": [SUBSCRIPTION], "query": text, "options": options}
    )


def site(client: httpx.Client, name: str, **body: object) -> dict[str, object]:
    r = client.put(
        f"{rg_path('rg1')}/providers/Microsoft.Web/sites/{name}",
        params={"api-version": "2023-01-01"},
        json={"location": "westeurope", **body},
    )
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def test_discovery_query_finds_identity_and_client_id_references(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    site(
        emulator_arm,
        "uses-identity",
        identity={"type": "UserAssigned", "userAssignedIdentities": {ident["id"].upper(): {}}},
    )
    site(emulator_arm, "kv-ref", properties={"keyVaultReferenceIdentity": ident["id"]})
    site(
        emulator_arm,
        "app-setting",
        properties={
            "siteConfig": {
                "appSettings": [{"name": "AZURE_CLIENT_ID", "value": ident["properties"]["clientId"]}]
            }
        },
    )
    site(emulator_arm, "unrelated")
    iid, cid = ident["id"], ident["properties"]["clientId"]
    text = (f"Resources | where tostring(identity) contains '{iid}' or tostring(properties) contains '{iid}' or "
            f"tostring(properties) contains '{cid}' | project id, name, type, location, resourceGroup, subscriptionId | order by id asc")  # fmt: skip
    r = query(emulator_arm, text)
    assert r.status_code == 200
    body = r.json()
    # the identity itself matches too (its properties hold its client id), as in real Resource Graph; the
    # site holding the client id in an app setting does not: Resource Graph does not index setting values
    assert [d["name"] for d in body["data"]] == ["kv-ref", "uses-identity", "id1"]
    assert body["data"][0] == {"id": f"{rg_path('rg1')}/providers/Microsoft.Web/sites/kv-ref", "name": "kv-ref", "type": "microsoft.web/sites",
                               "location": "westeurope", "resourceGroup": "rg1", "subscriptionId": SUBSCRIPTION}  # fmt: skip
    assert (
        body["totalRecords"] == 3
        and body["count"] == 3
        and body["resultTruncated"] == "false"
        and "$skipToken" not in body
    )
    assert r.headers["x-ms-user-quota-remaining"] and r.headers["x-ms-user-quota-resets-after"]


def test_rows_carry_identity_and_identities_are_resources(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    rows = query(
        emulator_arm, "Resources | where type =~ 'Microsoft.ManagedIdentity/userAssignedIdentities'"
    ).json()["data"]
    assert [r["name"] for r in rows] == ["id1"] and rows[0]["properties"]["clientId"] == ident["properties"][
        "clientId"
    ]
    groups = query(
        emulator_arm,
        "ResourceContainers | where type == 'microsoft.resources/subscriptions/resourcegroups' | project name",
    ).json()["data"]
    assert groups == [{"name": "rg1"}]


def test_paging_with_top_skip_and_skip_token(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg1")
    for i in range(7):
        site(emulator_arm, f"app{i}")
    first = query(emulator_arm, "Resources | project id, name | order by name asc", **{"$top": 3}).json()
    assert [d["name"] for d in first["data"]] == ["app0", "app1", "app2"] and first["totalRecords"] == 7
    second = query(
        emulator_arm,
        "Resources | project id, name | order by name asc",
        **{"$top": 3, "$skipToken": first["$skipToken"]},
    ).json()
    assert [d["name"] for d in second["data"]] == ["app3", "app4", "app5"]
    skipped = query(
        emulator_arm, "Resources | project name | order by name desc | take 4", **{"$skip": 1}
    ).json()
    assert [d["name"] for d in skipped["data"]] == ["app5", "app4", "app3"]


def test_lag_behind_arm(emulator_arm: httpx.Client) -> None:
    configure(emulator_arm, resourceGraphLagSeconds=2)  # wide enough for a busy machine's first look

    def late() -> list[Any]:
        return list(query(emulator_arm, "Resources | where name == 'late'").json()["data"])

    put_group(emulator_arm, "rg1")
    site(emulator_arm, "late")
    assert late() == []
    wait_until(lambda: len(late()) == 1, timeout=30, what="indexed")
    emulator_arm.delete(
        f"{rg_path('rg1')}/providers/Microsoft.Web/sites/late", params={"api-version": "2023-01-01"}
    )
    assert len(late()) == 1  # still there, stale
    wait_until(lambda: late() == [], timeout=30, what="dropped from the index")


def test_user_quota_429(emulator_arm: httpx.Client) -> None:
    configure(emulator_arm, throttling={"enabled": True})
    remaining = [
        int(query(emulator_arm, "Resources | take 1").headers["x-ms-user-quota-remaining"]) for _ in range(15)
    ]
    assert remaining == list(range(14, -1, -1))
    over = query(emulator_arm, "Resources | take 1")
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    assert over.headers["x-ms-user-quota-remaining"] == "0"


def test_invalid_queries_are_400_invalid_query(emulator_arm: httpx.Client) -> None:
    for text in (
        "Resources | where",
        "Resources | summarize count() by type",
        "Nope | take 1",
        "Resources | where nosuchcolumn == 1",
        "Resources | where foo(name)",
    ):
        r = query(emulator_arm, text)
        assert r.status_code == 400, text
        assert (
            r.json()["error"]["code"] == "BadRequest"
            and r.json()["error"]["details"][0]["code"] == "InvalidQuery"
        )


ROWS = [
    {
        "id": "/a",
        "name": "Alpha-1",
        "type": "t",
        "tags": {"env": "prod"},
        "properties": {"n": 1, "list": ["x", "y"]},
        "identity": None,
    },
    {
        "id": "/b",
        "name": "beta",
        "type": "t",
        "tags": {},
        "properties": {"n": 2, "list": []},
        "identity": {"type": "SystemAssigned"},
    },
]
COLS = ["id", "name", "type", "tags", "properties", "identity"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("name == 'beta'", ["/b"]),
        ("name == 'BETA'", []),
        ("name =~ 'BETA'", ["/b"]),
        ("name != 'beta'", ["/a"]),
        ("name !~ 'ALPHA-1'", ["/b"]),
        ("name contains 'ALP'", ["/a"]),
        ("name !contains 'alp'", ["/b"]),
        ("name has 'alpha'", ["/a"]),
        ("name has 'alp'", []),
        ("name in ('beta', 'gamma')", ["/b"]),
        ("name in~ ('BETA')", ["/b"]),
        ("name !in ('beta')", ["/a"]),
        ("isnotnull(identity)", ["/b"]),
        ("isnull(identity)", ["/a"]),
        ("properties.n > 1", ["/b"]),
        ("properties['n'] == 1", ["/a"]),
        ("properties.list[1] == 'y'", ["/a"]),
        ("tags.env == 'prod' and name startswith 'al'", ["/a"]),
        ("not(name == 'beta')", ["/a"]),
        ("name == 'beta' or tostring(properties) contains '\"n\":1'", ["/a", "/b"]),
        ("tostring(identity) contains 'systemassigned'", ["/b"]),
        ("tolower(name) == 'alpha-1'", ["/a"]),
    ],
)
def test_kql_where(where: str, expected: list[str]) -> None:
    _, rows = kql.compile_query(f"Resources | where {where}", {"Resources": COLS})({"Resources": ROWS})
    assert [r["id"] for r in rows] == expected


def test_kql_project_extend_order_count() -> None:
    run = kql.compile_query(
        "Resources | extend n = properties.n | project id, n, env = tags.env | order by n desc",
        {"Resources": COLS},
    )
    assert run({"Resources": ROWS})[1] == [
        {"id": "/b", "n": 2, "env": None},
        {"id": "/a", "n": 1, "env": "prod"},
    ]
    assert kql.compile_query("Resources | count", {"Resources": COLS})({"Resources": ROWS})[1] == [
        {"Count": 2}
    ]
    with pytest.raises(kql.KqlError):
        kql.compile_query("Resources | project id | where name == 'x'", {"Resources": COLS})


def test_a_comparison_with_a_literal_answers_what_the_general_comparison_answers() -> None:
    """``kql._against_literal`` (the literal's lower case made once per query) is a shortcut of
    ``kql._compare``: the same answer for every operator it covers, on every kind of value a row holds."""
    from emulator import kql

    values = [None, "", "AbC", "xabcx", "abc", 5, 5.0, True, False, {"a": "AbC"}, ["abc"], {}]
    literals = ["abc", "ABC", "", "5", "true", '{"a":"AbC"}', '["abc"]']
    for op in ("contains", "!contains", "=~", "!~", "==", "!="):
        for value in values:
            for literal in literals:
                fast = kql._against_literal(op, lambda r, v=value: v, literal)
                assert fast is not None
                # ``is``: a where clause keeps a row only if its test is True itself, not truthy
                assert fast({}) is kql._compare(op, value, literal), (op, value, literal)
    for op in ("has", "!has", "startswith", "endswith", "contains_cs", "<", ">="):
        assert kql._against_literal(op, lambda r: "x", "x") is None  # the general path
    # through the parser: a literal on the right takes the shortcut, one on the left does not
    rows = [{"name": "web-abc"}, {"name": "ABC"}, {"name": None}]

    def where(clause: str) -> list[Any]:
        _, found = kql.compile_query(f"Resources | where {clause}", {"Resources": ["name"]})(
            {"Resources": rows}
        )
        return [r["name"] for r in found]

    assert where("name contains 'abc'") == ["web-abc", "ABC"]
    # the other way round: 'abc' holds 'ABC' (case-insensitive) and an empty name, not 'web-abc'
    assert where("'abc' contains name") == ["ABC", None]
    assert where("name =~ 'abc' or name == 'web-abc'") == ["web-abc", "ABC"]
    assert where("not(name =~ 'abc') and name != 'x'") == ["web-abc"]
