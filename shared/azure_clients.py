"""The one door to Azure: credential, endpoints, retry policy and logging for every client.

``AzureClients(settings)`` builds, lazily and once per subscription:

* ``msi(sub)`` -> ``ManagedServiceIdentityClient`` (api-version 2024-11-30, the azure-mgmt-msi 7.1
  default; ``isolationScope`` needs >= 2024-11-30)
* ``authorization(sub)`` -> ``AuthorizationManagementClient`` (role assignments 2022-04-01)
* ``resources(sub)`` -> ``ResourceManagementClient`` for generic resources by id; the api-version of a
  resource type comes from ``api_version_for(type)``
* ``resource_graph()`` -> ``ResourceGraphClient``
* ``graph`` -> ``GraphClient``: Microsoft Graph through a plain ``azure.core.PipelineClient`` with a
  bearer-token policy and the same retry policy. Not the msgraph-sdk: it is very large, and its
  kiota authentication refuses plain http (so it cannot talk to the loopback emulator).
* ``eventgrid()`` -> ``EventGridPublisherClient`` (``AzureKeyCredential`` when a key is configured)

Credential: ``default`` -> ``DefaultAzureCredential``; ``emulator`` -> a static bearer token (an unsigned
JWT whose ``oid`` is ``IDMOVE_EMULATOR_PRINCIPAL_ID``, so the emulator authorizes the mover as a principal;
``principal_id()`` reads the ``oid`` back from whichever token is in use), REFUSED
unless every configured endpoint is loopback; only then the bearer policy lifts azure-core's
https-only rule (``enforce_https=False`` in the request context). Scopes derive from endpoints
(``{arm}/.default``, ``{graph scheme+host}/.default``), so sovereign clouds work by setting them.

Retries: ``InlineRetryPolicy``, azure-core's ``RetryPolicy`` (429/408/5xx, connection errors; honours
``Retry-After``, ``retry-after-ms``, ``x-ms-retry-after-ms``) except that a 429/503 asking for more than
``IDMOVE_INLINE_RETRY_MAX_SECONDS`` (2 s) is not slept in the handler's thread: the error reaches the
phase, ``classify`` makes it a throttled ``TransientError`` with ``retry_after``, and the engine
re-enqueues the step with that delay. Pacing: every ARM client carries
``ArmWritePacingPolicy`` after the retry policy: writes and deletes are paced per subscription by the
process's ``WriteLimiter`` (``IDMOVE_ARM_WRITES_PER_SECOND``, see ``shared/arm_pacing.py``), so many
moves at once stay inside ARM's per-subscription budget instead of spinning on 429s. Logging: azure-core's ``HttpLoggingPolicy`` redacts
``Authorization`` and we never log bodies, tokens or keys. Phases never build clients: they get these.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core import PipelineClient
from azure.core.credentials import AccessToken, AccessTokenInfo, AzureKeyCredential, TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    RetryPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.eventgrid import EventGridPublisherClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.polling.arm_polling import ARMPolling
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from requests.adapters import HTTPAdapter

from shared.arm_pacing import ArmWritePacingPolicy, WriteLimiter, shared_limiter
from shared.settings import Settings

USER_AGENT = "identity-mover/0.1"

# api-versions for generic resource GET/PATCH/PUT when the provider cannot be asked.
KNOWN_API_VERSIONS: dict[str, str] = {
    "microsoft.web/sites": "2023-12-01",
    "microsoft.compute/virtualmachines": "2024-07-01",
    "microsoft.compute/virtualmachinescalesets": "2024-07-01",
    "microsoft.containerinstance/containergroups": "2023-05-01",
    "microsoft.containerservice/managedclusters": "2024-09-01",
    "microsoft.storage/storageaccounts": "2023-05-01",
    "microsoft.keyvault/vaults": "2023-07-01",
    "microsoft.app/containerapps": "2024-03-01",
    "microsoft.sql/servers": "2023-08-01",
    "microsoft.documentdb/databaseaccounts": "2024-08-15",
    "microsoft.managedidentity/userassignedidentities": "2024-11-30",
}
DEFAULT_API_VERSION = "2023-07-01"


class CredentialRefused(Exception):
    """The emulator credential was configured for a non-loopback endpoint."""


class StaticTokenCredential:
    """A fixed bearer token for the loopback emulator. Never used against a real endpoint."""

    def __init__(self, token: str = "emulator-token") -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, int(time.time()) + 3600)

    def __repr__(self) -> str:
        return "StaticTokenCredential(<redacted>)"


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """``header.payload.`` (base64url, ``alg: none``): what the emulator reads a caller from."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT access token (not verified: only to learn who we are); ``{}`` if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return payload if isinstance(payload, dict) else {}


def emulator_credential(principal_id: str) -> StaticTokenCredential:
    """The mover in emulator mode: an unsigned JWT naming ``principal_id`` as its ``oid`` (an app token), so
    the emulator authorizes it like any principal. The estate owner (tests, demos) uses a non-JWT token."""
    return StaticTokenCredential(unsigned_jwt({"oid": principal_id, "idtyp": "app", "sub": principal_id}))


class LoopbackBearerPolicy(BearerTokenCredentialPolicy[Any, Any]):
    """Bearer tokens over plain http, for the loopback emulator only."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context.options["enforce_https"] = False
        super().on_request(request)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scope_for(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}/.default"


THROTTLE_STATUSES = (429, 503)


class InlineRetryPolicy(RetryPolicy[Any, Any]):
    """``RetryPolicy`` that sleeps a 429/503 ``Retry-After`` inline only up to ``inline_max`` seconds.

    A longer wait is not retried here: the response goes back to the caller (the SDK raises
    ``HttpResponseError``), so the handler's thread is free and the engine re-enqueues the step.
    The decision is an instance attribute so that a wrapper copying the policy's state (the
    benchmark's observer) keeps it.
    """

    def __init__(self, inline_max: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inline_max = inline_max
        self.is_retry = self._retry_inline  # type: ignore[method-assign]

    def _retry_inline(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        if response.http_response.status_code in THROTTLE_STATUSES:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.inline_max:
                return False
        return bool(RetryPolicy.is_retry(self, settings, response))


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds asked to wait (``retry-after-ms``, ``x-ms-retry-after-ms`` or ``Retry-After`` seconds)."""
    headers = headers or {}
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("Retry-After", 1.0)):
        value = str(headers.get(name) or "").strip()
        if not value:
            continue
        try:
            return float(value) / scale
        except ValueError:
            continue  # an HTTP date: azure-core's RetryPolicy has already honoured it
    return None


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"Graph {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class GraphClient:
    """Microsoft Graph over ``PipelineClient``: ``get``/``post``/``delete`` and ``list`` (follows @odata.nextLink)."""

    def __init__(self, endpoint: str, pipeline: PipelineClient[HttpRequest, Any]) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._client = pipeline

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = path if path.startswith("http") else f"{self.endpoint}{path}"
        request = HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        response = self._client.send_request(request)
        payload: Any = None
        if response.content:
            try:
                payload = response.json()
            except ValueError:
                payload = response.text()
        if response.status_code >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            raise GraphError(
                response.status_code,
                str(error.get("code", "")),
                str(error.get("message", payload)),
                retry_after_seconds(response.headers),
            )
        return response.status_code, payload

    def get(self, path: str) -> Any:
        return self.request("GET", path)[1]

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)[1]

    def delete(self, path: str) -> int:
        return self.request("DELETE", path)[0]

    def list(self, path: str) -> list[Any]:
        items: list[Any] = []
        next_url: str | None = path
        while next_url:
            page = self.get(next_url)
            items.extend(page.get("value", []))
            next_url = page.get("@odata.nextLink")
        return items


# connections kept per host: a process's handler threads (8), each step's calls side by side
# (``shared/side_by_side.py``, 6) and fleet discovery's reads (8). With requests' default of 10 a
# 4-instance bench logged "Connection pool is full, discarding connection" and opened new ones (in
# Azure, a TLS handshake each)
POOL_SIZE = 64


def _shared_transport() -> RequestsTransport:
    """One connection pool for every client of an ``AzureClients`` (each SDK client otherwise opens
    its own session with its own pool)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return RequestsTransport(session=session, session_owner=False)


class AzureClients:
    """Builds and caches SDK clients; counts nothing itself (the emulator counts requests)."""

    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential | None = None,
        write_limiter: WriteLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.write_limiter = write_limiter or shared_limiter(
            settings.arm_writes_per_second, settings.arm_writes_burst, settings.arm_max_pacing_wait
        )
        self.loopback = settings.credential == "emulator"
        if self.loopback:
            endpoints = [settings.arm_endpoint, settings.graph_endpoint]
            if settings.eventgrid_endpoint:
                endpoints.append(settings.eventgrid_endpoint)
            remote = [e for e in endpoints if not is_loopback(e)]
            if remote:
                raise CredentialRefused(
                    "IDMOVE_CREDENTIAL=emulator sends a static token and is only allowed when every endpoint "
                    f"is loopback (127.0.0.1/localhost); these are not: {', '.join(remote)}"
                )
        self.credential: TokenCredential = credential or self._default_credential()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], Any] = {}
        self._api_versions: dict[str, str] = {}
        self._providers: dict[str, dict[str, list[str]]] = {}
        self._graph: GraphClient | None = None
        self._memo: dict[str, tuple[float, Any]] = {}
        self._transport = _shared_transport()

    def memo(self, key: str, max_age: float, read: Callable[[], Any]) -> Any:
        """``read()``, remembered by this process for ``max_age`` seconds under ``key`` (0: read now and
        remember). For what changes rarely and is read by every move: the visible subscriptions, role
        definitions. Per ``AzureClients``, i.e. per credential and endpoint; an exception is not kept."""
        now = time.monotonic()
        with self._lock:
            found = self._memo.get(key)
        if found is not None and max_age > 0 and now - found[0] <= max_age:
            return found[1]
        value = read()
        with self._lock:
            self._memo[key] = (now, value)
        return value

    def _default_credential(self) -> TokenCredential:
        if self.loopback:
            return emulator_credential(self.settings.emulator_principal_id)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def _retry(self) -> RetryPolicy[Any, Any]:
        return InlineRetryPolicy(
            self.settings.inline_retry_max_seconds,
            retry_total=self.settings.arm_retry_total,
            retry_backoff_factor=0.5,
            retry_backoff_max=30,
        )

    def _auth(self, scope: str) -> BearerTokenCredentialPolicy[Any, Any]:
        policy = LoopbackBearerPolicy if self.loopback else BearerTokenCredentialPolicy
        return policy(self.credential, scope)

    def _mgmt_kwargs(self) -> dict[str, Any]:
        scope = scope_for(self.settings.arm_endpoint)
        return {
            "base_url": self.settings.arm_endpoint,
            "credential_scopes": [scope],
            "authentication_policy": self._auth(scope),
            "retry_policy": self._retry(),
            "per_retry_policies": [ArmWritePacingPolicy(self.write_limiter)],
            "user_agent": USER_AGENT,
            "transport": self._transport,
        }

    def _cached(self, kind: str, key: str, build: Any) -> Any:
        with self._lock:
            if (kind, key) not in self._cache:
                self._cache[(kind, key)] = build()
            return self._cache[(kind, key)]

    def msi(self, subscription_id: str) -> ManagedServiceIdentityClient:
        return self._cached(  # type: ignore[no-any-return]
            "msi",
            subscription_id,
            lambda: ManagedServiceIdentityClient(self.credential, subscription_id, **self._mgmt_kwargs()),
        )

    def authorization(self, subscription_id: str) -> AuthorizationManagementClient:
        return self._cached(  # type: ignore[no-any-return]
            "auth",
            subscription_id,
            lambda: AuthorizationManagementClient(self.credential, subscription_id, **self._mgmt_kwargs()),
        )

    def resources(self, subscription_id: str) -> ResourceManagementClient:
        return self._cached(  # type: ignore[no-any-return]
            "res",
            subscription_id,
            lambda: ResourceManagementClient(self.credential, subscription_id, **self._mgmt_kwargs()),
        )

    def resource_graph(self) -> ResourceGraphClient:
        return self._cached("arg", "", lambda: ResourceGraphClient(self.credential, **self._mgmt_kwargs()))  # type: ignore[no-any-return]

    @property
    def graph(self) -> GraphClient:
        if self._graph is None:
            scope = scope_for(self.settings.graph_endpoint)
            pipeline: PipelineClient[HttpRequest, Any] = PipelineClient(
                base_url=self.settings.graph_endpoint,
                policies=[
                    HeadersPolicy({"Accept": "application/json"}),
                    UserAgentPolicy(USER_AGENT),
                    self._retry(),
                    self._auth(scope),
                    HttpLoggingPolicy(),
                ],
                transport=self._transport,
            )
            self._graph = GraphClient(self.settings.graph_endpoint, pipeline)
        return self._graph

    def eventgrid(self) -> EventGridPublisherClient | None:
        endpoint = self.settings.eventgrid_endpoint
        if not endpoint:
            return None
        if self.settings.eventgrid_key:
            credential: Any = AzureKeyCredential(self.settings.eventgrid_key)
        elif self.loopback:
            credential = AzureKeyCredential("emulator")  # the loopback sink accepts any non-empty key
        else:
            credential = self.credential
        return self._cached("eg", endpoint, lambda: EventGridPublisherClient(endpoint, credential))  # type: ignore[no-any-return]

    def principal_id(self) -> str:
        """Who the mover is (its service principal's object id): the ``oid`` of its own ARM token."""
        token = self.credential.get_token(scope_for(self.settings.arm_endpoint)).token
        return str(token_claims(token).get("oid") or "").lower()

    def subscription_ids(self, any_subscription: str, max_age: float = 0) -> list[str]:
        """Every subscription the credential can see (``GET /subscriptions``, paged), lower case; a list
        read by this process less than ``max_age`` seconds ago is used again (``memo``)."""
        return list(self.memo("subscriptions", max_age, lambda: self._list_subscriptions(any_subscription)))

    def _list_subscriptions(self, any_subscription: str) -> list[str]:
        client = self.resources(any_subscription)
        url: str | None = f"{self.settings.arm_endpoint}/subscriptions?api-version=2022-12-01"
        found: list[str] = []
        while url:
            response = client.send_request(HttpRequest("GET", url))
            response.raise_for_status()
            page = response.json()
            found += [str(s.get("subscriptionId") or "").lower() for s in page.get("value") or []]
            url = page.get("nextLink")
        return sorted({s for s in found if s})

    def arm(
        self, method: str, path: str, api_version: str, body: Any = None, *, wait: bool = False
    ) -> tuple[int, Any]:
        """A plain ARM request for an API with no SDK client in our set (Key Vault access policies,
        Cosmos DB ``sqlRoleAssignments``, database administrators, App Service ``config/*``), through
        the same pipeline as every other ARM call (credential, ``InlineRetryPolicy``, write pacing,
        logging). Returns ``(status, JSON body or None)``; a status >= 400 raises ``HttpResponseError``
        with ARM's error code (so ``classify`` reads it like an SDK error).

        ``wait=True``: an asynchronous answer (201/202 with ``Azure-AsyncOperation`` or ``Location``) is
        polled to its end by azure-core's ``ARMPolling`` (ARM's LRO rules; interval = ``Retry-After``,
        else ``LRO_POLL_SECONDS`` x ``IDMOVE_BACKOFF_SCALE``); a Failed/Canceled operation raises. The
        body is then the final resource (None for a DELETE).
        """
        url = path if path.startswith("http") else f"{self.settings.arm_endpoint}{path}"
        url += ("&" if "?" in url else "?") + f"api-version={api_version}"
        request = HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        client = self.resources(subscription_of(path) or "00000000-0000-0000-0000-000000000000")
        # the private flag hands back the PipelineResponse that ARMPolling starts from
        pipeline_response: Any = client.send_request(request, _return_pipeline_response=True)
        response = pipeline_response.http_response
        if response.status_code >= 400:
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        headers = response.headers
        if (
            wait
            and response.status_code in (201, 202)
            and (headers.get("Azure-AsyncOperation") or headers.get("Location"))
        ):
            polling = ARMPolling(LRO_POLL_SECONDS * self.settings.backoff_scale)
            poller: LROPoller[Any] = LROPoller(
                client._client,  # the mgmt client's PipelineClient: same policies
                pipeline_response,
                lambda final: _json_or_none(final.http_response),
                polling,
            )
            return response.status_code, poller.result()
        return response.status_code, _json_or_none(response)

    def api_version_for(self, resource_id_or_type: str) -> str:
        """api-version for a resource type: the provider's newest stable one (asked once per namespace);
        where the provider cannot be asked, a small table of known types, else a default."""
        rtype = resource_type(resource_id_or_type).lower()
        if rtype not in self._api_versions:
            version = self._provider_api_version(resource_id_or_type, rtype)
            self._api_versions[rtype] = version or KNOWN_API_VERSIONS.get(rtype, DEFAULT_API_VERSION)
        return self._api_versions[rtype]

    def _provider_api_version(self, resource_id: str, rtype: str) -> str | None:
        sub = subscription_of(resource_id)
        namespace, _, type_name = rtype.partition("/")
        if not sub or namespace == "microsoft.managedidentity":
            return KNOWN_API_VERSIONS.get(rtype)
        if namespace not in self._providers:
            try:
                provider = self.resources(sub).providers.get(namespace)
                self._providers[namespace] = {
                    (t.resource_type or "").lower(): list(t.api_versions or [])
                    for t in provider.resource_types or []
                }
            except HttpResponseError:
                self._providers[namespace] = {}
        versions = self._providers[namespace].get(type_name) or []
        stable = [v for v in versions if "preview" not in v.lower()]
        return sorted(stable or versions)[-1] if versions else None


LRO_POLL_SECONDS = 2.0


def _json_or_none(response: Any) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def subscription_of(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    return parts[1].lower() if len(parts) > 1 and parts[0].lower() == "subscriptions" else ""


def resource_group_of(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    return parts[3] if len(parts) > 3 and parts[2].lower() == "resourcegroups" else ""


def resource_type(resource_id_or_type: str) -> str:
    """``/subscriptions/../providers/Microsoft.Web/sites/app`` -> ``Microsoft.Web/sites``."""
    if not resource_id_or_type.startswith("/"):
        return resource_id_or_type
    parts = resource_id_or_type.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    index = len(lowered) - 1 - lowered[::-1].index("providers")
    rest = parts[index + 1 :]
    namespace, names = rest[0], rest[1:]
    types = [names[i] for i in range(0, len(names), 2)]
    return "/".join([namespace, *types])
