"""Federated identity credentials of the identity, and who outside Azure holds its clientId through them.

discover: the identity's credentials (name, issuer, subject, audiences). copy: PUT under the new
identity ONE AT A TIME (one serial batch: Azure answers 409 to concurrent writes on one identity;
that 409 is transient, any other 409 -- e.g. the same issuer+subject under another name -- is
permanent). check: issuer/subject/audiences listed on the new identity. remove/undo: nothing
-- they go with their identity when it is deleted.

actions: a token exchange through a credential is only half of it; the workload asks for a token
with the clientId, so the place that holds it must get the new one:
``GitHubClientId`` (issuer ``https://token.actions.githubusercontent.com``, subject
``repo:ORG/REPO:...``: ``AZURE_CLIENT_ID`` in that repository or environment),
``KubernetesServiceAccount`` (issuer = an AKS cluster's ``oidcIssuerProfile.issuerURL`` in scope,
subject ``system:serviceaccount:NS:SA``: the ``azure.workload.identity/client-id`` annotation),
``FederatedIssuer`` (any other issuer). Clusters come from Resource Graph with their issuer
projected, each confirmed by a GET.

Example::

    KIND.actions(ctx, [{"issuer": "https://token.actions.githubusercontent.com",
                        "subject": "repo:contoso/payments:environment:prod", ...}], found)[0]["code"]  # "GitHubClientId"
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.mgmt.msi.models import FederatedIdentityCredential

from activities._azure import classify, get_resource
from activities.access.base import NEW_CLIENT_ID, Access, Found, Missing, action
from shared.context import ItemResult, PhaseContext

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
AKS_TYPE = "microsoft.containerservice/managedclusters"


def _issuer(url: Any) -> str:
    return str(url or "").strip().rstrip("/").lower()


class FederatedCredentials(Access):
    key = "federatedCredentials"
    title = "Federated identity credentials"
    copy_kind = "credential"
    serial = "credentials"
    candidate_types = (AKS_TYPE,)

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        ref = ctx.request.identity
        return [
            {"name": c.name, "issuer": c.issuer, "subject": c.subject, "audiences": list(c.audiences or [])}
            for c in ctx.clients.msi(ref.subscription_id).federated_identity_credentials.list(
                ref.resource_group, ref.name
            )
        ]

    def copy_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"cred-{entry['name']}"

    def copy(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        t, c = ctx.target, entry
        body = FederatedIdentityCredential(issuer=c["issuer"], subject=c["subject"], audiences=c["audiences"])
        try:
            ctx.clients.msi(t["subscriptionId"]).federated_identity_credentials.create_or_update(
                t["resourceGroup"], t["name"], c["name"], body
            )
        except HttpResponseError as exc:
            raise classify(exc, c["name"]) from exc
        return ItemResult("created", {"name": c["name"]})

    def check(self, ctx: PhaseContext, entries: list[dict[str, Any]]) -> list[Missing]:
        target = ctx.target
        have = {
            (c.issuer, c.subject, tuple(sorted(c.audiences or [])))
            for c in ctx.clients.msi(target["subscriptionId"]).federated_identity_credentials.list(
                target["resourceGroup"], target["name"]
            )
        }
        return [
            Missing(f"federated credential {c['name']}", c["name"])
            for c in entries
            if (c["issuer"], c["subject"], tuple(sorted(c["audiences"]))) not in have
        ]

    def actions(self, ctx: PhaseContext, entries: list[dict[str, Any]], found: Found) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        clusters: dict[str, str] | None = None
        for c in entries:
            issuer, subject = _issuer(c["issuer"]), str(c["subject"])
            if issuer == GITHUB_ISSUER and subject.startswith("repo:"):
                out.append(_github(subject))
                continue
            if clusters is None:
                clusters = self._clusters(ctx, found, {_issuer(e["issuer"]) for e in entries})
            parts = subject.split(":")
            if issuer in clusters and len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
                namespace, account = parts[2], parts[3]
                out.append(
                    action(
                        "KubernetesServiceAccount",
                        f"{clusters[issuer]}/namespaces/{namespace}/serviceAccounts/{account}",
                        f"annotate service account {namespace}/{account} in cluster "
                        f"{clusters[issuer].rsplit('/', 1)[-1]} with azure.workload.identity/client-id: "
                        f"{NEW_CLIENT_ID} and restart its pods",
                    )
                )
                continue
            out.append(
                action(
                    "FederatedIssuer",
                    str(c["issuer"]),
                    f"the workload behind issuer {c['issuer']} (subject {subject}) asks for tokens with "
                    f"the old clientId: give it {NEW_CLIENT_ID}",
                )
            )
        return out

    def _clusters(self, ctx: PhaseContext, found: Found, issuers: set[str]) -> dict[str, str]:
        """issuer URL -> cluster id, for the clusters Resource Graph found whose issuer a credential names
        (each confirmed by a GET: Resource Graph lags)."""
        clusters: dict[str, str] = {}
        for row in found.rows_of(AKS_TYPE):
            if row.get("issuer") is not None and _issuer(row.get("issuer")) not in issuers:
                continue
            cluster = get_resource(ctx.clients, str(row["id"]))
            found.count("aksClustersRead")
            issuer = _issuer(
                ((cluster or {}).get("properties") or {}).get("oidcIssuerProfile", {}).get("issuerURL")
            )
            if cluster is not None and issuer in issuers:
                clusters[issuer] = str(cluster.get("id") or row["id"])
        return clusters


def _github(subject: str) -> dict[str, Any]:
    """``repo:ORG/REPO:environment:ENV`` / ``repo:ORG/REPO:ref:...`` -> the GitHubClientId step."""
    rest = subject.removeprefix("repo:")
    repo, _, qualifier = rest.partition(":")
    where = f"repository {repo}"
    target = f"https://github.com/{repo}"
    if qualifier.startswith("environment:"):
        environment = qualifier.removeprefix("environment:")
        where = f"environment {environment} of repository {repo}"
        target = f"{target}/settings/environments/{environment}"
    return action(
        "GitHubClientId",
        target,
        f"set the AZURE_CLIENT_ID secret/variable of {where} to {NEW_CLIENT_ID} "
        f"(federated subject {subject})",
    )


KIND = FederatedCredentials()
