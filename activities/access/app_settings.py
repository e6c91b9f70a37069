"""App Service / Functions app settings and connection strings that name the identity.

Identity-based connections name the identity in settings, not in the site's identity block:
``AZURE_CLIENT_ID``, ``<Connection>__clientId``, ``<Connection>__managedIdentityResourceId``. ARM keeps
them as sub-resources ``{site}/config/appsettings`` and ``{site}/config/connectionstrings`` (a slot,
``sites/{s}/slots/{slot}``, has its own); their values come only from ``POST .../list`` (a GET of the
site carries none, and Resource Graph does not index them), and ``PUT .../config/appsettings``
replaces the whole set.

discover: for every site and slot the identity is attached to, ``POST config/appsettings/list`` and
``config/connectionstrings/list`` (api 2023-12-01); an app setting counts when its value equals the
old clientId or identity resource id (case-insensitively), a connection string when its value
contains either. Only names are stored, never values. copy -- in REBIND, right after that site's
attachment (same serial batch), because pointing the app at the new clientId before the new
identity is attached would break it: list, rewrite old -> new, PUT the whole set back, one PUT per
sub-resource that changed. Running it again finds nothing left to rewrite (that is the idempotency;
a crash between the two PUTs converges on the next run). check: no listed value names the old
identity and each recorded name holds the new one. remove: nothing (the old value is gone already).
undo: new -> old, the same way.

copy and check list only the sub-resources the snapshot found naming the identity (``_kinds``; so
check's "no listed value names the old identity" covers those), except at a counterpart
(``resourceMap``), where they list both. Each list is a POST, and ARM counts a POST against the
subscription's *write* budget: listing both at every phase made 8 of a move's 16.5 writes in the
fleet bench (60 identities, each named in one app setting), so the connection strings' lists at
copy and check were an eighth of the floor spent on a sub-resource that named nothing. A setting
that names the identity only after the snapshot is access like any other granted after it: before
verify, the old code's copy or check would have seen it; now cleanup's discovery, which lists both
at every site the old identity is attached to after the commit, finds it and the engine runs
rebind and verify again (``SourceChanged``) before anything is deleted -- one named after that
discovery is missed, as before. A counterpart is never read by that discovery, hence both there.
undo lists both, always (see ``undo``).

Example::

    KIND.copy(ctx, {"site": ".../sites/web-payments01", "appSettings": ["AZURE_CLIENT_ID"],
                    "connectionStrings": []}).detail   # {"site": ..., "rewritten": ["AZURE_CLIENT_ID"]}
"""

from __future__ import annotations

from functools import partial
from typing import Any

from azure.core.exceptions import HttpResponseError

from activities._azure import classify, counterpart_of
from activities.access.base import Access, Found, Missing, short_key
from shared.context import ItemResult, ItemSpec, PhaseContext
from shared.side_by_side import side_by_side

API = "2023-12-01"
SITE_TYPES = ("microsoft.web/sites", "microsoft.web/sites/slots")
APP, CONN = "appsettings", "connectionstrings"


def serial_for(site_id: str) -> str:
    """The serial key that puts a site's attachment and its settings rewrite in one ordered batch."""
    return f"site-{short_key(site_id)}"


def _list(ctx: PhaseContext, site: str, which: str) -> dict[str, Any] | None:
    try:
        _, body = ctx.clients.arm("POST", f"{site}/config/{which}/list", API)
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return None
        raise classify(exc, site) from exc
    return dict((body or {}).get("properties") or {})


def _value(which: str, item: Any) -> str:
    return str((item or {}).get("value") or "") if which == CONN else str(item or "")


def _names(which: str, properties: dict[str, Any], needles: list[str]) -> list[str]:
    """Settings naming one of ``needles`` (lower case): equal for app settings, contained for connection strings."""
    found = []
    for name, item in properties.items():
        value = _value(which, item).lower()
        if (which == APP and value in needles) or (which == CONN and any(n in value for n in needles)):
            found.append(name)
    return sorted(found)


def _rewrite(which: str, properties: dict[str, Any], old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Replace old clientId/id by the new ones in place; the names changed."""
    changed = []
    for name, item in properties.items():
        value = _value(which, item)
        updated = value
        for field in ("clientId", "id"):
            if which == APP and value.lower() == old[field].lower():
                updated = new[field]
            elif which == CONN and old[field].lower() in updated.lower():
                start = updated.lower().index(old[field].lower())
                updated = updated[:start] + new[field] + updated[start + len(old[field]) :]
        if updated != value:
            properties[name] = {**item, "value": updated} if which == CONN else updated
            changed.append(name)
    return changed


KINDS = ((APP, "appSettings"), (CONN, "connectionStrings"))


def _kinds(entry: dict[str, Any], site: str) -> list[tuple[str, str]]:
    """What copy and check list at ``site`` (``which``, the entry's field): the sub-resources the
    snapshot found naming the identity, or both where ``site`` is a counterpart (``resourceMap``):
    cleanup's discovery reads the sites the old identity is attached to, never a counterpart, so
    nothing after verify would see a counterpart's setting that still names the old identity."""
    if site.lower() != str(entry["site"]).lower():
        return list(KINDS)
    return [(which, field) for which, field in KINDS if entry.get(field)]


def _needles(identity: dict[str, Any]) -> list[str]:
    return [str(identity["clientId"]).lower(), str(identity["id"]).lower()]


class AppSettings(Access):
    key = "appSettings"
    title = "App Service / Functions settings naming the identity"
    copy_kind = "appsettings"
    copy_phase = "rebind"

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        entries = []
        for attachment in found.attachments:
            if attachment["type"].lower() not in SITE_TYPES or not attachment["attached"]:
                continue
            site = attachment["id"]
            # both lists side by side: each is a POST (ARM's write latency), on every snapshot and
            # cleanup re-read
            listed = side_by_side(
                [partial(_list, ctx, site, which) for which in (APP, CONN)], ctx.settings.step_width
            )
            found.count("siteSettingsRead", 2)
            names = {
                which: _names(which, properties or {}, _needles(found.source))
                for which, properties in zip((APP, CONN), listed, strict=True)
            }
            if names[APP] or names[CONN]:
                entries.append({"site": site, "appSettings": names[APP], "connectionStrings": names[CONN]})
        return entries

    def copy_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"settings-{short_key(entry['site'])}"

    def copy_items(self, ctx: PhaseContext) -> list[ItemSpec]:
        return [
            ItemSpec(self.copy_kind, self.copy_key(ctx, e), e, serial=serial_for(e["site"]))
            for e in ctx.snapshot.get(self.key) or []
        ]

    def _swap(
        self,
        ctx: PhaseContext,
        kinds: list[tuple[str, str]],
        site: str,
        old: dict[str, Any],
        new: dict[str, Any],
    ) -> list[str]:
        rewritten = []
        for which, _ in kinds:
            properties = _list(ctx, site, which)
            if properties is None:
                continue
            changed = _rewrite(which, properties, old, new)
            if changed:
                try:
                    ctx.clients.arm("PUT", f"{site}/config/{which}", API, {"properties": properties})
                except HttpResponseError as exc:
                    raise classify(exc, site) from exc
                rewritten += changed
        return rewritten

    def copy(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        site = counterpart_of(ctx.request.resource_map, entry["site"])
        rewritten = self._swap(ctx, _kinds(entry, site), site, ctx.snapshot["identity"], ctx.target)
        return ItemResult("updated" if rewritten else "unchanged", {"site": site, "rewritten": rewritten})

    def check(self, ctx: PhaseContext, entries: list[dict[str, Any]]) -> list[Missing]:
        missing = []
        old, new = _needles(ctx.snapshot["identity"]), _needles(ctx.target)
        for entry in entries:
            site = counterpart_of(ctx.request.resource_map, entry["site"])
            for which, field in _kinds(entry, site):
                properties = _list(ctx, site, which) or {}
                for name in _names(which, properties, old):
                    missing.append(Missing(f"{which} {name} of {site} still names the old identity", site))
                holding_new = set(_names(which, properties, new))
                for name in entry[field]:
                    if name not in holding_new and name not in _names(which, properties, old):
                        missing.append(
                            Missing(f"{which} {name} of {site} does not name the new identity", site)
                        )
        return missing

    def undo(self, ctx: PhaseContext, target: dict[str, Any]) -> int:
        """Both sub-resources of every site, whatever the entry names: cleanup's discovery may have
        replaced an entry by what still named the old identity then (a setting named after the
        snapshot), leaving out what an earlier copy had already rewritten."""
        undone = 0
        for entry in ctx.snapshot.get(self.key) or []:
            site = counterpart_of(ctx.request.resource_map, entry["site"])
            undone += bool(self._swap(ctx, list(KINDS), site, target, ctx.snapshot["identity"]))
        return undone


KIND = AppSettings()
