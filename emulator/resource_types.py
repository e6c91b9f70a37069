"""What individual resource types do beyond the generic store (``arm_resources.py``), as Azure does it.

Three hooks, called by the generic layer and by Resource Graph:
- ``prepare(state, stored, existing)`` before a PUT/PATCH is stored:
  - ``Microsoft.Web/sites`` and ``sites/slots``: ``siteConfig.appSettings`` / ``siteConfig.connectionStrings``
    go to the ``config/appsettings`` / ``config/connectionstrings`` sub-resources (``site_settings.py``), as
    App Service files them on create; the site answers ``null`` there.
  - ``Microsoft.ContainerService/managedClusters``: ``oidcIssuerProfile.enabled`` fills ``issuerURL``
    (``https://{region}.oic.prod-aks.azure.com/{tenantId}/{guid}/``, stable across updates; read-only,
    a client's value is ignored); not enabled: no ``issuerURL``.
- ``present(body)`` for every answer (PUT, PATCH, GET, lists, Resource Graph rows): secrets are never
  echoed: Container Instances ``containers[].properties.environmentVariables[].secureValue`` (also
  init containers) and Container Apps ``configuration.secrets[].value`` are left out (the store keeps
  them; Container Apps lists them with ``POST …/listSecrets``).
- ``indexed(body)``: whether Resource Graph and the ``/resources`` lists show a resource. Proxy
  resources (a child type stored without a location: ``config``, ``administrators``,
  ``sqlRoleAssignments``, ...) are not indexed; tracked children (with a location, e.g. slots) are.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from emulator import site_settings
from emulator.state import TENANT_ID, State

AKS_TYPE = "microsoft.containerservice/managedclusters"
ACI_TYPE = "microsoft.containerinstance/containergroups"
CONTAINER_APP_TYPE = "microsoft.app/containerapps"
NOT_INDEXED = {
    "microsoft.web/sites/config",
    "microsoft.web/sites/slots/config",
    "microsoft.documentdb/databaseaccounts/sqlroleassignments",
    "microsoft.documentdb/databaseaccounts/sqlroledefinitions",
    "microsoft.dbforpostgresql/flexibleservers/administrators",
    "microsoft.dbformysql/flexibleservers/administrators",
    "microsoft.sql/servers/administrators",
}


def is_child_type(resource_type: str) -> bool:
    return resource_type.count("/") >= 2


def indexed(body: dict[str, Any]) -> bool:
    rtype = str(body.get("type", "")).lower()
    if rtype in NOT_INDEXED:
        return False
    return not (is_child_type(rtype) and not body.get("location"))


def prepare(state: State, stored: dict[str, Any], existing: dict[str, Any] | None) -> None:
    """Adjust a resource about to be stored by PUT or PATCH (in place)."""
    rtype = stored["type"].lower()
    props = stored.get("properties")
    if not isinstance(props, dict):
        return
    if rtype in site_settings.SITE_TYPES:
        _file_site_settings(state, stored, props)
    elif rtype == AKS_TYPE:
        _oidc_issuer(stored, props, existing)


def _file_site_settings(state: State, site: dict[str, Any], props: dict[str, Any]) -> None:
    site_config = props.get("siteConfig")
    if not isinstance(site_config, dict):
        return
    app, conn = site_settings.from_site_config(site_config)
    if app is not None:
        site_settings.write(state, site, "appsettings", app)
    if conn is not None:
        site_settings.write(state, site, "connectionstrings", conn)
    for field in ("appSettings", "connectionStrings"):
        if field in site_config:
            site_config[field] = None  # as a GET of the site answers: no values


def _oidc_issuer(cluster: dict[str, Any], props: dict[str, Any], existing: dict[str, Any] | None) -> None:
    profile = props.get("oidcIssuerProfile")
    if not isinstance(profile, dict):
        return
    if profile.get("enabled") is True:
        before = ((existing or {}).get("properties") or {}).get("oidcIssuerProfile") or {}
        issuer = before.get("issuerURL") or (
            f"https://{cluster['location']}.oic.prod-aks.azure.com/{TENANT_ID}/{uuid.uuid4()}/"
        )
        profile["issuerURL"] = issuer
    else:
        profile["enabled"] = False
        profile.pop("issuerURL", None)


def present(body: dict[str, Any]) -> dict[str, Any]:
    """The resource as Azure answers it (a copy when anything is left out)."""
    rtype = str(body.get("type", "")).lower()
    if rtype == ACI_TYPE:
        body = copy.deepcopy(body)
        props = body.get("properties") or {}
        for group in ("containers", "initContainers"):
            for container in props.get(group) or []:
                for var in ((container or {}).get("properties") or {}).get("environmentVariables") or []:
                    if isinstance(var, dict):
                        var.pop("secureValue", None)
    elif rtype == CONTAINER_APP_TYPE:
        body = copy.deepcopy(body)
        config = (body.get("properties") or {}).get("configuration") or {}
        for secret in config.get("secrets") or []:
            if isinstance(secret, dict):
                secret.pop("value", None)
    return body
