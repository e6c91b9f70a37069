"""Where App Service keeps app settings and connection strings: the sub-resources
``{site}/config/appsettings`` and ``{site}/config/connectionstrings`` (also under ``sites/{s}/slots/{x}``).

They are proxy resources stored next to the site (deleted with it), never indexed by Resource Graph and
never part of a GET of the site. The handlers are in ``web_config.py``; this low module only stores and
reads, so the generic resource layer can file ``siteConfig.appSettings`` of a site PUT here.
"""

from __future__ import annotations

import copy
from typing import Any

from emulator.ids import key
from emulator.state import State

KINDS = {"appsettings": "appsettings", "connectionstrings": "connectionstrings"}
SITE_TYPES = {"microsoft.web/sites", "microsoft.web/sites/slots"}


def config_id(site_id: str, kind: str) -> str:
    return f"{site_id}/config/{KINDS[kind.lower()]}"


def read(state: State, site: dict[str, Any], kind: str) -> dict[str, Any]:
    """The list answer: ``{"id", "name", "type", "kind"?, "properties": {...}}`` (empty set if never written)."""
    stored = state.resources.get(key(config_id(site["id"], kind)))
    body: dict[str, Any] = {
        "id": config_id(site["id"], kind),
        "name": KINDS[kind.lower()],
        "type": f"{site['type']}/config",
    }
    if site.get("kind"):
        body["kind"] = site["kind"]
    body["properties"] = copy.deepcopy(stored["properties"]) if stored else {}
    return body


def write(state: State, site: dict[str, Any], kind: str, properties: dict[str, Any]) -> dict[str, Any]:
    """Replace the whole set."""
    stored: dict[str, Any] = {
        "id": config_id(site["id"], kind),
        "name": KINDS[kind.lower()],
        "type": f"{site['type']}/config",
        "properties": copy.deepcopy(properties),
    }
    state.put_resource(stored["id"], stored)
    return read(state, site, kind)


def from_site_config(site_config: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``siteConfig.appSettings`` ([{name, value}]) and ``siteConfig.connectionStrings``
    ([{name, connectionString, type}]) of a site PUT, as the config sub-resources' property maps."""
    app = site_config.get("appSettings")
    conn = site_config.get("connectionStrings")
    app_map = None
    if isinstance(app, list):
        app_map = {str(s.get("name")): s.get("value") for s in app if isinstance(s, dict) and s.get("name")}
    conn_map = None
    if isinstance(conn, list):
        conn_map = {
            str(c.get("name")): {"value": c.get("connectionString"), "type": c.get("type", "Custom")}
            for c in conn
            if isinstance(c, dict) and c.get("name")
        }
    return app_map, conn_map
