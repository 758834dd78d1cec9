"""Country names and codes as the sources spell them, mapped to ISO 3166-1 (pycountry holds the standard).

OONI and netvigil use alpha-2 (`probe_cc`), the World Bank alpha-3, and Access Now's STOP sheets and IODA's
investigated outages free-text English names, some of them abbreviated or historical. One table of aliases here
keeps every stage mapping them the same way; an unknown name maps to None, never to a guess.
"""

from __future__ import annotations

from functools import lru_cache

import pycountry

__all__ = ["alpha2", "alpha3", "country_name"]

# Spellings seen in the STOP 2016-2022 sheets and IODA's investigated-outages list that pycountry does not know.
# Entities without an ISO code (Somaliland, the EU) map to the code of the state they are usually counted under only
# where the sources themselves do so; otherwise they stay unmapped.
_ALIASES = {
    "antigua & barbuda": "AG",
    "bonaire/sint eustatius/saba": "BQ",
    "bosnia & herzegovina": "BA",
    "cape verde": "CV",
    "curacao": "CW",
    "democratic republic of (drc)": "CD",
    "democratic republic of the congo": "CD",
    "democraticrepubliccongo": "CD",
    "drc": "CD",
    "great britain": "GB",
    "iran (islamic republic of)": "IR",
    "ivory coast (cote d'ivoire)": "CI",
    "ivory coast": "CI",
    "kyrgyz republic (kyrgyzstan)": "KG",
    "macedonia": "MK",
    "myanmar/burma": "MM",
    "burma": "MM",
    "palestine": "PS",
    "palestinian territories": "PS",
    "reunion": "RE",
    "russia": "RU",
    "saint martin": "MF",
    "srilanka": "LK",
    "swaziland": "SZ",
    "timor leste": "TL",
    "turkey": "TR",
    "united states of america (usa)": "US",
    "venezuela (bolivarian republic of)": "VE",
    "kosovo": "XK",
    "xk": "XK",
    "xkx": "XK",
}


@lru_cache(maxsize=4096)
def alpha2(name_or_code: str | None) -> str | None:
    """ISO alpha-2 for a name, alpha-2 or alpha-3 code as the sources write it; None when unknown."""
    if not name_or_code:
        return None
    key = " ".join(name_or_code.split()).strip()
    if not key:
        return None
    alias = _ALIASES.get(key.lower())
    if alias:
        return alias
    try:
        return pycountry.countries.lookup(key).alpha_2
    except LookupError:
        return None


@lru_cache(maxsize=1024)
def alpha3(code: str | None) -> str | None:
    """ISO alpha-3 (the World Bank's code) for an alpha-2 code or a name; None when unknown."""
    a2 = alpha2(code)
    if a2 is None:
        return None
    if a2 == "XK":
        return "XKX"  # the World Bank's code for Kosovo
    country = pycountry.countries.get(alpha_2=a2)
    return country.alpha_3 if country else None


def country_name(code: str | None) -> str | None:
    """The common English name for an alpha-2/alpha-3 code (for tables and STOP export)."""
    a2 = alpha2(code)
    if a2 is None:
        return None
    if a2 == "XK":
        return "Kosovo"
    country = pycountry.countries.get(alpha_2=a2)
    if country is None:
        return None
    return getattr(country, "common_name", None) or country.name
