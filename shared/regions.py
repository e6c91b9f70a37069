"""Azure region names the mover accepts as ``targetRegion`` (public and sovereign clouds).

A static list: checking it costs nothing at ``start`` (400 ``InvalidTargetRegion`` at once). The
plan (snapshot) then checks the region against the source (equal region is a blocker).
Kept in lower case without spaces, as ARM names locations.
"""

from __future__ import annotations

KNOWN_REGIONS: frozenset[str] = frozenset(
    """
    australiacentral australiacentral2 australiaeast australiasoutheast austriaeast belgiumcentral
    brazilsouth brazilsoutheast canadacentral canadaeast centralindia centralus centraluseuap
    chilecentral eastasia eastus eastus2 eastus2euap francecentral francesouth germanynorth
    germanywestcentral indonesiacentral israelcentral italynorth japaneast japanwest jioindiacentral
    jioindiawest koreacentral koreasouth malaysiawest mexicocentral newzealandnorth northcentralus
    northeurope norwayeast norwaywest polandcentral qatarcentral southafricanorth southafricawest
    southcentralus southindia southeastasia spaincentral swedencentral swedensouth switzerlandnorth
    switzerlandwest uaecentral uaenorth uksouth ukwest westcentralus westeurope westindia westus
    westus2 westus3
    usgovarizona usgovtexas usgovvirginia usdodcentral usdodeast
    chinaeast chinaeast2 chinaeast3 chinanorth chinanorth2 chinanorth3
    """.split()  # noqa: SIM905 - one readable block
)


def normalize_region(value: str) -> str:
    """``"West Europe"`` -> ``"westeurope"``."""
    return value.replace(" ", "").strip().lower()
