"""Azure SQL servers: reported, never changed (``SqlEntraAdmin``, ``SqlContainedUser`` in ``actionsRequired``).

An Azure SQL server has ONE Microsoft Entra administrator, ``{server}/administrators/ActiveDirectory``
(api 2023-08-01), whose ``sid`` is a managed identity's clientId; moving it to the new identity
before commit would take it from the old one while the workload still uses it. Database users
created with ``CREATE USER [name] FROM EXTERNAL PROVIDER`` are bound to the old identity's SID and
live inside each database, where ARM cannot see them: the new identity needs its own users,
created with T-SQL by someone who can log in to the database.

discover: Resource Graph lists the SQL servers in scope (it does not index the administrator's
``sid``); a GET of each server's ``ActiveDirectory`` administrator says whether Entra authentication
is on and whether the identity is the administrator. actions: ``SqlEntraAdmin`` where it is;
``SqlContainedUser`` for every server with Entra authentication (the users cannot be listed from
ARM, so each such server is named, with the T-SQL to run where the old identity is a user).

Example::

    KIND.actions(ctx, [{"server": ".../servers/sql-payments", "admin": True, ...}], found)[0]["code"]  # "SqlEntraAdmin"
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError

from activities._azure import classify, same_id
from activities.access.base import NEW_CLIENT_ID, Access, Found, action
from shared.context import PhaseContext

API = "2023-08-01"
SQL_TYPE = "microsoft.sql/servers"


def _name(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


class SqlServers(Access):
    key = "sqlServers"
    title = "Azure SQL Entra administrator and database users"
    candidate_types = (SQL_TYPE,)

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        source, entries = found.source, []
        for row in found.rows_of(SQL_TYPE):
            server = str(row["id"])
            found.count("sqlServersRead")
            try:
                _, admin = ctx.clients.arm("GET", f"{server}/administrators/ActiveDirectory", API)
            except HttpResponseError as exc:
                if exc.status_code == 404:
                    continue  # no Entra administrator: Entra authentication is off, no Entra users
                raise classify(exc, server) from exc
            props = (admin or {}).get("properties") or {}
            entries.append(
                {
                    "server": server,
                    "admin": same_id(props.get("sid"), source["clientId"])
                    or same_id(props.get("sid"), source["principalId"]),
                    "login": props.get("login"),
                }
            )
        return entries

    def actions(self, ctx: PhaseContext, entries: list[dict[str, Any]], found: Found) -> list[dict[str, Any]]:
        old = found.source["name"]
        new = found.target.get("name") or "<new identity name>"
        out = []
        for e in entries:
            if e["admin"]:
                out.append(
                    action(
                        "SqlEntraAdmin",
                        f"{e['server']}/administrators/ActiveDirectory",
                        f"SQL server {_name(e['server'])} has the old identity as its Microsoft Entra admin "
                        f"(login {e.get('login')}): set the admin to {new} (sid {NEW_CLIENT_ID}) when "
                        "the workload has switched, before commit deletes the old identity",
                    )
                )
            out.append(
                action(
                    "SqlContainedUser",
                    e["server"],
                    f"in each database of SQL server {_name(e['server'])} where [{old}] is a user, run: "
                    f"CREATE USER [{new}] FROM EXTERNAL PROVIDER; and for each role of [{old}] "
                    f"(SELECT r.name FROM sys.database_role_members m JOIN sys.database_principals r ON "
                    f"r.principal_id = m.role_principal_id JOIN sys.database_principals u ON "
                    f"u.principal_id = m.member_principal_id WHERE u.name = '{old}'): "
                    f"ALTER ROLE [<role>] ADD MEMBER [{new}]; plus its GRANTs",
                )
            )
        return out


KIND = SqlServers()
