"""Economics: the open cost method for internet disruptions (pure functions; files and downloads in tasks/economics).

``indicators`` turns World Bank WDI / OWID CSV text into typed country-year inputs, ``model`` prices an Incident as
a low / central / high range with the factors that made it, ``explain`` writes the arithmetic out.
"""

from netvigil.economics.indicators import (
    INDICATORS, CountryYear, IndicatorSpec, Indicators, MissingDataError, RejectedRow, UnknownCountryError,
    YearValue, country_year, parse_indicator_csv,
)
from netvigil.economics.model import (
    DEFAULT_PARAMS, METHOD_ID, CostDataError, CostError, CostEstimate, CostParams, Factor, Param, PricingReport, Segment,
    estimate, estimate_combined, load_params, price_incidents, price_incidents_report,
)

__all__ = [
    "INDICATORS", "CountryYear", "IndicatorSpec", "Indicators", "MissingDataError", "RejectedRow",
    "UnknownCountryError", "YearValue", "country_year", "parse_indicator_csv",
    "DEFAULT_PARAMS", "METHOD_ID", "CostDataError", "CostError", "CostEstimate", "CostParams", "Factor", "Param", "PricingReport",
    "Segment", "estimate", "estimate_combined", "load_params", "price_incidents", "price_incidents_report",
]
