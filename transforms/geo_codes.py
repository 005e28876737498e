"""Geographic codes: municipal arrondissements and the département of a commune."""

from __future__ import annotations

import pandas as pd

# Paris, Lyon and Marseille: IRIS data use the arrondissements, ARCEP, CAF and commune outlines
# the whole city (methodology §1).
CITY_ARRONDISSEMENTS: dict[str, tuple[str, ...]] = {
    "75056": tuple(str(c) for c in range(75101, 75121)),
    "69123": tuple(str(c) for c in range(69381, 69390)),
    "13055": tuple(str(c) for c in range(13201, 13217)),
}
ARRONDISSEMENT_TO_CITY: dict[str, str] = {arr: city for city, arrs in CITY_ARRONDISSEMENTS.items() for arr in arrs}


def city_code(communes: pd.Series) -> pd.Series:
    """Commune code with arrondissements replaced by their city (69381 → 69123)."""
    return communes.map(ARRONDISSEMENT_TO_CITY).fillna(communes).astype(str)


def departement_code(communes: pd.Series) -> pd.Series:
    """Département of a commune: 3 characters overseas (971…976), else 2 (incl. 2A/2B)."""
    communes = communes.astype(str)
    return communes.str[:3].where(communes.str.startswith("97"), communes.str[:2])


def isin_codes(codes: pd.Series, values) -> pd.Series:
    """`codes.isin(values)` through a hash index: pandas' `isin` on text columns builds a Python
    object per value, which took seconds against the ~35,000 communes of France."""
    index = pd.Index(list(values) if isinstance(values, (set, frozenset)) else values).unique()
    return pd.Series(index.get_indexer(codes) >= 0, index=codes.index)


def lookup_commune_values(
    communes: pd.Series, table: pd.DataFrame, key: str = "INSEE_COM"
) -> tuple[pd.DataFrame, pd.Series]:
    """Rows of a commune table for each commune, trying the arrondissement then its city.

    Returns the looked-up rows (aligned on `communes`, NaN where neither code is in the table)
    and the code actually used, so callers can say which values came from the whole city.
    """
    indexed = table.set_index(key)
    direct = isin_codes(communes, indexed.index)
    used = communes.where(direct, city_code(communes))
    found = isin_codes(used, indexed.index)
    rows = indexed.reindex(used.where(found)).set_axis(communes.index)
    return rows, used.where(found)
