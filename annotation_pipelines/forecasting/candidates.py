"""The forecasting candidates, one factory per statsforecast model.

Candidates (statsforecast; Garza et al., "StatsForecast: lightning fast forecasting with
statistical and econometric models", 2022): the seasonal naive (the baseline: tomorrow's hour
repeats today's), a weekly seasonal naive, AutoETS (Hyndman et al., 2002, exponential
smoothing state space, model picked by AICc), AutoTheta (Assimakopoulos & Nikolopoulos,
2000) and MSTL (Bandara et al., 2021: loess decomposition with several seasonalities, ETS on
the trend). AutoARIMA is available on request; it is ~50x slower.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from functools import partial

BASELINE = "SeasonalNaive"
ETS_LONGEST_SEASON = 168


class UnknownModelError(ValueError):
    """Model names no candidate has; the message lists the names there are."""


def check_model_names(names: Sequence[str], known: Collection[str]) -> None:
    """Raise `UnknownModelError` naming each of `names` not in `known`."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UnknownModelError(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )


def candidate_models(
    *,
    season_length: int,
    horizon: int,
    extra_seasonalities: Sequence[int] = (),
    arima: bool = False,
) -> dict[str, Callable[[], object]]:
    """Name -> factory of the statsforecast candidates; the baseline is always first.

    Factories, not instances: statsforecast models keep fitted state, and each group of series
    gets fresh ones.
    """
    from statsforecast.models import (
        MSTL,
        AutoARIMA,
        AutoETS,
        AutoTheta,
        SeasonalNaive,
    )

    models: dict[str, Callable[[], object]] = {
        BASELINE: lambda: SeasonalNaive(season_length=season_length, alias=BASELINE),
    }
    for extra in extra_seasonalities:
        models[f"SeasonalNaive{extra}"] = partial(
            SeasonalNaive, season_length=extra, alias=f"SeasonalNaive{extra}"
        )
    # Each seasonal ETS candidate checks its parameters through the roots of a polynomial of
    # degree season_length at every optimizer step: 2-16 s a fit at 96 steps, 39 s at 288 on
    # the 5-minute Helios trace (0.3 s non-seasonal, the model it chose anyway) and hours at a
    # per-minute day of 1,440. Above a week of hourly steps the seasonal shape is left to MSTL,
    # AutoTheta and the seasonal naive beside it.
    ets_model = "ZZZ" if season_length <= ETS_LONGEST_SEASON else "ZZN"
    models["AutoETS"] = lambda: AutoETS(
        season_length=season_length, model=ets_model, alias="AutoETS"
    )
    models["AutoTheta"] = lambda: AutoTheta(season_length=season_length, alias="AutoTheta")
    seasons = (
        [season_length, *extra_seasonalities] if season_length > 1 else list(extra_seasonalities)
    )
    if seasons:
        models["MSTL"] = lambda: MSTL(season_length=seasons, alias="MSTL")
    if arima:
        models["AutoARIMA"] = lambda: AutoARIMA(season_length=season_length, alias="AutoARIMA")
    return models


def default_extra_seasonalities(season_length: int) -> tuple[int, ...]:
    """Hourly data (a daily season of 24) also has a weekly season of 168."""
    return (7 * season_length,) if season_length == 24 else ()
