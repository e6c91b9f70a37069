"""The Bicep under infra/ keeps its security promises: checked on the parse tree, not on text.

The files are parsed with pycep-parser (the Bicep parser checkov uses), which lives in the tools venv
`.venv-tools` (made by `make install`) because checkov's pins clash with the app's; a subprocess of that
venv's Python dumps every file's tree as JSON. `azure.yaml` is read there too (PyYAML comes with checkov).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"
CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"

_DUMP = """
import json, sys
from pathlib import Path
import yaml
from pycep import BicepParser
root = Path(sys.argv[1])
parser = BicepParser(add_line_numbers=True)
out = {"bicep": {}, "nested": [], "azure_yaml": yaml.safe_load((root / "azure.yaml").read_text())}
for path in sorted((root / "infra").rglob("*.bicep")):
    name = path.relative_to(root / "infra").as_posix()
    out["bicep"][name] = parser.parse(file_path=path)
    if "child_resource" in parser.create_tree(file_path=path):
        out["nested"].append(name)
json.dump(out, sys.stdout, default=str)
"""

# Built-in role definitions: name -> id (identical in every Azure cloud).
BUILTIN_ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Managed Identity Contributor": "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "EventGrid Data Sender": "d5a91429-5739-47e2-a06b-3470a27159e7",
}
# rbac.bicep variable -> the built-in role it must hold.
ROLE_VARIABLES = {
    "storageBlobDataOwnerRoleId": "Storage Blob Data Owner",
    "storageQueueDataContributorRoleId": "Storage Queue Data Contributor",
    "storageTableDataContributorRoleId": "Storage Table Data Contributor",
    "monitoringMetricsPublisherRoleId": "Monitoring Metrics Publisher",
    "eventGridDataSenderRoleId": "EventGrid Data Sender",
    "managedIdentityContributorRoleId": "Managed Identity Contributor",
    "managedIdentityOperatorRoleId": "Managed Identity Operator",
    "rbacAdministratorRoleId": "Role Based Access Control Administrator",
    "ownerRoleId": "Owner",
    "userAccessAdministratorRoleId": "User Access Administrator",
}
PRIVILEGED = {
    BUILTIN_ROLES[n]
    for n in ("Owner", "User Access Administrator", "Role Based Access Control Administrator")
}

EXPECTED_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AZURE_CLIENT_ID",
    "IDMOVE_CREDENTIAL",
    "IDMOVE_ARM_ENDPOINT",
    "IDMOVE_GRAPH_ENDPOINT",
    "IDMOVE_EVENTGRID_ENDPOINT",
    "IDMOVE_ALLOWED_SUBSCRIPTIONS",
    "IDMOVE_QUEUE_NAME",
}

Tree = dict[str, Any]


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    if not TOOLS_PYTHON.exists():
        pytest.fail(
            "the tools venv is missing: run `make install` (it creates .venv-tools with pycep-parser)"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [str(TOOLS_PYTHON), "-c", _DUMP, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def bicep(parsed: dict[str, Any]) -> dict[str, Tree]:
    files: dict[str, Tree] = parsed["bicep"]
    return files


def body(resource: Tree) -> Tree:
    """A resource's or module's own object, looking through `[for ...]` loops and `if (...)` conditions."""
    config: Tree = resource["config"]
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def resources_of(bicep: dict[str, Tree], type_: str) -> Iterator[tuple[str, str, Tree]]:
    """Declared (not `existing`) resources of one type. Child resources are declared with `parent:` at the
    top level: pycep-parser does not return resources nested inside another resource's body."""
    for file, tree in bicep.items():
        for name, resource in (tree.get("resources") or {}).items():
            if resource["type"] == type_ and not resource["existing"]:
                yield file, name, body(resource)


def the(bicep: dict[str, Tree], type_: str, name: str) -> Tree:
    found = [b for _, n, b in resources_of(bicep, type_) if n == name]
    assert len(found) == 1, f"expected one {type_} named {name}, found {len(found)}"
    return found[0]


def variable(tree: Tree, name: str) -> Any:
    return tree["variables"][name]["value"]


def resolve(tree: Tree, text: str) -> str:
    """Substitute `${var}` interpolations with the file's string variables and undo Bicep's `\\'` escapes."""
    out, rest = [], text
    while "${" in rest:
        before, _, after = rest.partition("${")
        name, _, rest = after.partition("}")
        out.append(before)
        out.append(resolve(tree, variable(tree, name)))
    out.append(rest)
    return "".join(out).replace("\\'", "'")


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if not key.startswith("__"):
                yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)


def functions_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("function"), dict):
            yield str(node["function"].get("type"))
        for value in node.values():
            yield from functions_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from functions_in(item)


def app_settings(bicep: dict[str, Tree]) -> dict[str, Any]:
    api = bicep["app/api.bicep"]
    site = the(bicep, "Microsoft.Web/sites", "functionApp")
    assert site["properties"]["siteConfig"]["appSettings"] == "appSettings"
    entries = variable(api, "appSettings")
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), "duplicate app setting"
    return {e["name"]: e["value"] for e in entries}


# --- the files ----------------------------------------------------------------------------------------


def test_every_bicep_file_parses_and_declares_its_scope(bicep: dict[str, Tree]) -> None:
    assert set(bicep) >= {
        "main.bicep",
        "app/api.bicep",
        "app/rbac.bicep",
        "app/rbac-subscription.bicep",
        "app/rbac-managementgroup.bicep",
        "app/storage.bicep",
        "app/monitoring.bicep",
        "app/eventgrid.bicep",
        "app/event-subscription.bicep",
        "app/identity.bicep",
    }
    assert bicep["main.bicep"]["globals"]["scope"]["value"] == "subscription"
    assert bicep["app/rbac-subscription.bicep"]["globals"]["scope"]["value"] == "subscription"
    assert bicep["app/rbac-managementgroup.bicep"]["globals"]["scope"]["value"] == "managementGroup"


def test_no_resource_is_nested_inside_another(parsed: dict[str, Any]) -> None:
    # pycep-parser drops nested child resources from its JSON, so they would escape these tests: use `parent:`.
    assert parsed["nested"] == []


def test_parameters_file_names_only_real_parameters(bicep: dict[str, Tree]) -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = set(bicep["main.bicep"]["parameters"])
    assert set(parameters) <= declared
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"


def test_azure_yaml_deploys_the_repo_as_a_python_function_app(parsed: dict[str, Any]) -> None:
    azure_yaml = parsed["azure_yaml"]
    api = azure_yaml["services"]["api"]
    assert (api["project"], api["language"], api["host"]) == (".", "python", "function")
    for hook in ("postprovision", "postdeploy"):
        script = ROOT / azure_yaml["hooks"][hook]["posix"]["run"]
        assert script.is_file() and os.access(script, os.X_OK), script
    assert os.access(INFRA / "scripts" / "grant-graph-permissions.sh", os.X_OK)


# --- storage, monitoring, event grid ------------------------------------------------------------------


def test_storage_account_accepts_only_entra_id_over_tls12(bicep: dict[str, Tree]) -> None:
    props = the(bicep, "Microsoft.Storage/storageAccounts", "storage")["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True
    container = the(bicep, "Microsoft.Storage/storageAccounts/blobServices/containers", "deploymentContainer")
    assert container["properties"]["publicAccess"] == "None"


def test_monitoring_has_local_auth_disabled(bicep: dict[str, Tree]) -> None:
    insights = the(bicep, "Microsoft.Insights/components", "applicationInsights")["properties"]
    assert insights["DisableLocalAuth"] is True
    assert insights["WorkspaceResourceId"]
    workspace = the(bicep, "Microsoft.OperationalInsights/workspaces", "logAnalytics")["properties"]
    assert workspace["features"]["disableLocalAuth"] is True


def test_event_grid_topics_accept_only_entra_id_publishers(bicep: dict[str, Tree]) -> None:
    topics = {name: b["properties"] for _, name, b in resources_of(bicep, "Microsoft.EventGrid/topics")}
    assert set(topics) == {"eventsTopic", "decommissionTopic"}
    assert all(t["disableLocalAuth"] is True for t in topics.values())
    assert topics["eventsTopic"]["inputSchema"] == "CloudEventSchemaV1_0"


def test_region_decommissioning_reaches_the_function_once_it_exists(bicep: dict[str, Tree]) -> None:
    sub = the(bicep, "Microsoft.EventGrid/topics/eventSubscriptions", "regionDecommissioning")["properties"]
    assert sub["destination"]["endpointType"] == "AzureFunction"
    assert sub["destination"]["properties"]["resourceId"].endswith("/functions/${functionName}")
    assert sub["filter"]["includedEventTypes"] == ["IdentityMover.RegionDecommissioning"]
    module = bicep["main.bicep"]["modules"]["decommissionSubscription"]
    assert module["config"]["condition"] == "decommissionSubscriptionEnabled"
    assert body(module)["params"]["functionName"] == "region_decommissioning"
    assert bicep["main.bicep"]["parameters"]["decommissionSubscriptionEnabled"]["default"] is False


# --- the function app ---------------------------------------------------------------------------------


def test_function_app_is_flex_consumption_python_311_with_its_own_identity(bicep: dict[str, Tree]) -> None:
    plan = the(bicep, "Microsoft.Web/serverfarms", "plan")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = the(bicep, "Microsoft.Web/sites", "functionApp")
    assert site["identity"]["type"] == "UserAssigned"
    assert site["properties"]["httpsOnly"] is True
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    deployment = config["deployment"]["storage"]
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"]["type"] == "UserAssignedIdentity"


def test_app_settings_are_identity_based_and_hold_no_secret(bicep: dict[str, Tree]) -> None:
    settings = app_settings(bicep)
    assert set(settings) == EXPECTED_SETTINGS
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["IDMOVE_CREDENTIAL"] == "default"
    assert (
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "ClientId=${identityClientId};Authorization=AAD"
    )
    # No storage connection string, no Event Grid key: both services have local auth disabled anyway.
    assert "AzureWebJobsStorage" not in settings
    assert "IDMOVE_EVENTGRID_KEY" not in settings
    for text in strings_in(settings):
        for secret_marker in (
            "AccountKey=",
            "SharedAccessKey",
            "SharedAccessSignature",
            "InstrumentationKey=",
        ):
            assert secret_marker not in text
    for file, tree in bicep.items():
        calls = set(functions_in(tree))
        assert not {c for c in calls if c.startswith("list")}, f"{file} reads keys with a list*() function"


def test_app_setting_names_follow_the_contract(bicep: dict[str, Tree]) -> None:
    if not CONTRACT.is_file():
        pytest.skip(f"{CONTRACT} not present")
    lines = CONTRACT.read_text().split("## Emulator")[0].splitlines()
    contract = set()
    for line in lines:
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            contract |= {part.strip().strip("`") for part in first_cell.split("/")}
    assert "IDMOVE_ARM_ENDPOINT" in contract, "the contract's Settings table moved"
    settings = set(app_settings(bicep))
    ours = {s for s in settings if s.startswith("IDMOVE_")}
    assert ours <= contract
    # Every contract setting is set, except the two replaced by identity: the storage connection string
    # (its identity-based form is the AzureWebJobsStorage__* family) and the Event Grid key; and the
    # emulator's principal id, which only means something with IDMOVE_CREDENTIAL=emulator (local).
    assert contract - ours == {"AzureWebJobsStorage", "IDMOVE_EVENTGRID_KEY", "IDMOVE_EMULATOR_PRINCIPAL_ID"}
    assert any(s.startswith("AzureWebJobsStorage__") for s in settings)


def test_endpoints_come_from_the_cloud_without_trailing_slashes(bicep: dict[str, Tree]) -> None:
    main = bicep["main.bicep"]
    assert variable(main, "armEndpointRaw") == {
        "function": {"type": "environment", "property_name": "resourceManager"}
    }
    strip = variable(main, "armEndpoint")["operator"]["operands"]
    assert strip["condition"]["function"]["type"] == "ends_with"
    assert strip["true_value"]["function"]["type"] == "substring"
    graph = variable(main, "microsoftGraphByCloud")
    assert graph["AzureCloud"] == "https://graph.microsoft.com"
    assert all(not url.endswith("/") for url in graph.values())
    assert "/v1.0" in json.dumps(variable(main, "graphEndpointSetting"))
    api = body(main["modules"]["api"])["params"]
    assert (api["armEndpoint"], api["graphEndpoint"]) == ("armEndpoint", "graphEndpointSetting")


# --- role assignments ---------------------------------------------------------------------------------


def role_assignments(bicep: dict[str, Tree]) -> list[tuple[str, str, Tree]]:
    found = list(resources_of(bicep, "Microsoft.Authorization/roleAssignments"))
    assert found, "no role assignments found"
    return found


def test_every_role_assignment_is_for_a_service_principal_with_a_deterministic_name(
    bicep: dict[str, Tree],
) -> None:
    for file, name, assignment in role_assignments(bicep):
        where = f"{file}:{name}"
        assert assignment["properties"]["principalType"] == "ServicePrincipal", where
        assert assignment["properties"]["principalId"] == "principalId", where
        guid_call = assignment["name"]["function"]
        assert guid_call["type"] == "guid", where
        assert "principalId" in guid_call["parameters"].values(), where


def test_role_decisions_live_only_in_rbac_bicep(bicep: dict[str, Tree]) -> None:
    for file, tree in bicep.items():
        if file == "app/rbac.bicep":
            continue
        for text in strings_in(tree):
            try:
                uuid.UUID(text)
            except ValueError:
                continue
            pytest.fail(f"{file} holds a GUID literal {text}: role ids belong in app/rbac.bicep")


def test_role_id_variables_are_the_built_in_roles_they_name(bicep: dict[str, Tree]) -> None:
    rbac = bicep["app/rbac.bicep"]
    source = (INFRA / "app" / "rbac.bicep").read_text().splitlines()
    role_vars = {n: v for n, v in rbac["variables"].items() if n.endswith("RoleId")}
    assert set(role_vars) == set(ROLE_VARIABLES)
    for name, declaration in role_vars.items():
        role = ROLE_VARIABLES[name]
        assert declaration["value"] == BUILTIN_ROLES[role], name
        line = source[declaration["__start_line__"] - 1]
        assert line.split("//", 1)[1].strip() == role, f"{name} must carry the comment // {role}"


def test_resource_scoped_roles_are_exactly_the_hosts_needs(bicep: dict[str, Tree]) -> None:
    rbac = bicep["app/rbac.bicep"]
    granted = {}
    for name, resource in rbac["resources"].items():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        config = body(resource)
        role_var = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        granted[role_var] = config["scope"]
        assert config["name"]["function"]["parameters"]["extra_string_2"] == role_var, name
    assert granted == {
        "storageBlobDataOwnerRoleId": "storage",
        "storageQueueDataContributorRoleId": "storage",
        "storageTableDataContributorRoleId": "storage",
        "monitoringMetricsPublisherRoleId": "applicationInsights",
        "eventGridDataSenderRoleId": "eventsTopic",
    }


def test_managed_scopes_get_identity_roles_and_the_conditioned_rbac_administrator(
    bicep: dict[str, Tree],
) -> None:
    rbac = bicep["app/rbac.bicep"]
    assert variable(rbac, "managedScopeRoleIds") == [
        "managedIdentityContributorRoleId",
        "managedIdentityOperatorRoleId",
    ]
    modules = rbac["modules"]
    subscription_module = modules["managedSubscriptionRoles"]
    assert subscription_module["detail"]["path"] == "rbac-subscription.bicep"
    assert subscription_module["config"]["loop_type"]["detail"]["array_name"] == "managedSubscriptionIds"
    mg_module = modules["managedManagementGroupRoles"]
    assert mg_module["detail"]["path"] == "rbac-managementgroup.bicep"
    assert body(mg_module)["scope"]["function"]["type"] == "management_group"
    for module in (subscription_module, mg_module):
        assert body(module)["params"] == {
            "principalId": "principalId",
            "roleIds": "managedScopeRoleIds",
            "rbacAdministratorRoleId": "rbacAdministratorRoleId",
            "rbacAdministratorCondition": "rbacAdministratorCondition",
            "rebindRoleName": "rebindRoleName",
            "rebindRoleActions": "rebindRoleActions",
        }
    for file in ("app/rbac-subscription.bicep", "app/rbac-managementgroup.bicep"):
        resources = bicep[file]["resources"]
        assert set(resources) == {"unconditioned", "rbacAdministrator", "rebindRole", "rebinder"}
        unconditioned = body(resources["unconditioned"])["properties"]
        assert "condition" not in unconditioned and "conditionVersion" not in unconditioned
        admin = body(resources["rbacAdministrator"])["properties"]
        assert admin["condition"] == "rbacAdministratorCondition", file
        assert admin["conditionVersion"] == "2.0", file
        assert (
            admin["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
            == "rbacAdministratorRoleId"
        )


def _braced_after(condition: str, marker: str) -> list[set[str]]:
    sets = []
    for chunk in condition.split(marker)[1:]:
        inside = chunk.strip().removeprefix("{").split("}", 1)[0]
        sets.append({item.strip().strip("'") for item in inside.split(",")})
    return sets


def test_rbac_administrator_condition_protects_privileged_roles_and_non_service_principals(
    bicep: dict[str, Tree],
) -> None:
    rbac = bicep["app/rbac.bicep"]
    condition = resolve(rbac, variable(rbac, "rbacAdministratorCondition"))
    privileged = ", ".join(
        BUILTIN_ROLES[n]
        for n in ("Owner", "User Access Administrator", "Role Based Access Control Administrator")
    )
    attr = "Microsoft.Authorization/roleAssignments"
    expected = (
        f"((!(ActionMatches{{'{attr}/write'}})) OR "
        f"(@Request[{attr}:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals {{{privileged}}} AND "
        f"@Request[{attr}:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}})) AND "
        f"((!(ActionMatches{{'{attr}/delete'}})) OR "
        f"(@Resource[{attr}:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals {{{privileged}}} AND "
        f"@Resource[{attr}:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
    )
    assert condition == expected
    # And read structurally: both actions exclude exactly the three privileged roles, allow only service principals.
    assert _braced_after(condition, "GuidNotEquals") == [PRIVILEGED, PRIVILEGED]
    assert _braced_after(condition, "StringEqualsIgnoreCase") == [{"ServicePrincipal"}, {"ServicePrincipal"}]
    assert condition.count("(") == condition.count(")")


def test_no_role_assignment_grants_a_privileged_role_directly(bicep: dict[str, Tree]) -> None:
    rbac = bicep["app/rbac.bicep"]
    assigned = set(variable(rbac, "managedScopeRoleIds"))
    for resource in rbac["resources"].values():
        if resource["type"] == "Microsoft.Authorization/roleAssignments":
            assigned.add(
                body(resource)["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
            )
    assert not assigned & {"ownerRoleId", "userAccessAdministratorRoleId", "rbacAdministratorRoleId"}
