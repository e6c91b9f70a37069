"""Subscription locations (``GET /subscriptions/{s}/locations``): ~40 real public-cloud regions.

Shape as ARM's ``Location`` (name, displayName, regionalDisplayName, metadata with regionType,
regionCategory, geographyGroup, latitude/longitude, physicalLocation, pairedRegion).
"""

from __future__ import annotations

from typing import Any

# name, displayName, geographyGroup, physicalLocation, latitude, longitude, paired region
_REGIONS: list[tuple[str, str, str, str, str, str, str]] = [
    ("eastus", "East US", "US", "Virginia", "37.3719", "-79.8164", "westus"),
    ("eastus2", "East US 2", "US", "Virginia", "36.6681", "-78.3889", "centralus"),
    ("southcentralus", "South Central US", "US", "Texas", "29.4167", "-98.5", "northcentralus"),
    ("westus2", "West US 2", "US", "Washington", "47.233", "-119.852", "westcentralus"),
    ("westus3", "West US 3", "US", "Phoenix", "33.448376", "-112.074036", "eastus"),
    ("centralus", "Central US", "US", "Iowa", "41.5908", "-93.6208", "eastus2"),
    ("northcentralus", "North Central US", "US", "Illinois", "41.8819", "-87.6278", "southcentralus"),
    ("westus", "West US", "US", "California", "37.783", "-122.417", "eastus"),
    ("westcentralus", "West Central US", "US", "Wyoming", "40.89", "-110.234", "westus2"),
    ("canadacentral", "Canada Central", "Canada", "Toronto", "43.653", "-79.383", "canadaeast"),
    ("canadaeast", "Canada East", "Canada", "Quebec", "46.817", "-71.217", "canadacentral"),
    (
        "brazilsouth",
        "Brazil South",
        "South America",
        "Sao Paulo State",
        "-23.55",
        "-46.633",
        "southcentralus",
    ),
    ("northeurope", "North Europe", "Europe", "Ireland", "53.3478", "-6.2597", "westeurope"),
    ("westeurope", "West Europe", "Europe", "Netherlands", "52.3667", "4.9", "northeurope"),
    ("uksouth", "UK South", "Europe", "London", "50.941", "-0.799", "ukwest"),
    ("ukwest", "UK West", "Europe", "Cardiff", "53.427", "-3.084", "uksouth"),
    ("francecentral", "France Central", "Europe", "Paris", "46.3772", "2.373", "francesouth"),
    ("francesouth", "France South", "Europe", "Marseille", "43.8345", "2.1972", "francecentral"),
    (
        "germanywestcentral",
        "Germany West Central",
        "Europe",
        "Frankfurt",
        "50.110924",
        "8.682127",
        "germanynorth",
    ),
    ("germanynorth", "Germany North", "Europe", "Berlin", "53.073635", "8.806422", "germanywestcentral"),
    ("switzerlandnorth", "Switzerland North", "Europe", "Zurich", "47.451542", "8.564572", "switzerlandwest"),
    ("switzerlandwest", "Switzerland West", "Europe", "Geneva", "46.204391", "6.143158", "switzerlandnorth"),
    ("norwayeast", "Norway East", "Europe", "Norway", "59.913868", "10.752245", "norwaywest"),
    ("norwaywest", "Norway West", "Europe", "Norway", "58.969975", "5.733107", "norwayeast"),
    ("swedencentral", "Sweden Central", "Europe", "Gävle", "60.67488", "17.14127", "swedensouth"),
    ("polandcentral", "Poland Central", "Europe", "Warsaw", "52.23334", "21.01666", ""),
    ("italynorth", "Italy North", "Europe", "Milan", "45.46888", "9.18109", ""),
    ("spaincentral", "Spain Central", "Europe", "Madrid", "40.4259", "-3.4209", ""),
    (
        "southafricanorth",
        "South Africa North",
        "Africa",
        "Johannesburg",
        "-25.73134",
        "28.21837",
        "southafricawest",
    ),
    ("uaenorth", "UAE North", "Middle East", "Dubai", "25.266666", "55.316666", "uaecentral"),
    ("qatarcentral", "Qatar Central", "Middle East", "Doha", "25.551462", "51.439327", ""),
    ("centralindia", "Central India", "Asia Pacific", "Pune", "18.5822", "73.9197", "southindia"),
    ("southindia", "South India", "Asia Pacific", "Chennai", "12.9822", "80.1636", "centralindia"),
    ("eastasia", "East Asia", "Asia Pacific", "Hong Kong", "22.267", "114.188", "southeastasia"),
    ("southeastasia", "Southeast Asia", "Asia Pacific", "Singapore", "1.283", "103.833", "eastasia"),
    ("japaneast", "Japan East", "Asia Pacific", "Tokyo, Saitama", "35.68", "139.77", "japanwest"),
    ("japanwest", "Japan West", "Asia Pacific", "Osaka", "34.6939", "135.5022", "japaneast"),
    ("koreacentral", "Korea Central", "Asia Pacific", "Seoul", "37.5665", "126.978", "koreasouth"),
    ("koreasouth", "Korea South", "Asia Pacific", "Busan", "35.1796", "129.0756", "koreacentral"),
    (
        "australiaeast",
        "Australia East",
        "Asia Pacific",
        "New South Wales",
        "-33.86",
        "151.2094",
        "australiasoutheast",
    ),
    (
        "australiasoutheast",
        "Australia Southeast",
        "Asia Pacific",
        "Victoria",
        "-37.8136",
        "144.9631",
        "australiaeast",
    ),
    (
        "australiacentral",
        "Australia Central",
        "Asia Pacific",
        "Canberra",
        "-35.3075",
        "149.1244",
        "australiacentral2",
    ),
]

NAMES: frozenset[str] = frozenset(r[0] for r in _REGIONS) | {"global"}
_BY_DISPLAY = {r[1].lower().replace(" ", ""): r[0] for r in _REGIONS}


def normalize(location: str) -> str:
    """ARM accepts ``East US`` for ``eastus`` and stores the short name."""
    compact = location.lower().replace(" ", "")
    return _BY_DISPLAY.get(compact, compact)


def locations(subscription_id: str) -> list[dict[str, Any]]:
    result = []
    for name, display, geo, physical, lat, lon, paired in _REGIONS:
        metadata: dict[str, Any] = {
            "regionType": "Physical",
            "regionCategory": "Recommended",
            "geography": geo,
            "geographyGroup": geo,
            "longitude": lon,
            "latitude": lat,
            "physicalLocation": physical,
            "pairedRegion": [{"name": paired, "id": f"/subscriptions/{subscription_id}/locations/{paired}"}]
            if paired
            else [],
        }
        result.append(
            {
                "id": f"/subscriptions/{subscription_id}/locations/{name}",
                "name": name,
                "type": "Region",
                "displayName": display,
                "regionalDisplayName": f"({geo}) {display}",
                "metadata": metadata,
            }
        )
    return result
