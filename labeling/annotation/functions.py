"""The labeling functions of the store-associate annotator, and the default set of them.

Each is a small class with a stable ``name`` and ``apply(utterance) -> list[Vote | None]``
(:mod:`labeling.annotation.base`); each answers one question well and abstains elsewhere:

============================  ===================  ==============================================================
class                         name                 votes
============================  ===================  ==============================================================
:class:`ChampionSlots`        ``champion``         the serving model's slot tags, with its token confidence
:class:`NameGazetteer`        ``names_gazetteer``  person on Census names (+ surname) and, surer, roster names
:class:`BrandGazetteer`       ``brand_lexicon``    brand / product on lexicon matches ("new balance")
:class:`TimeExpressions`      ``time_rules``       time on clock times, dates, days, relative times, shift anchors
:class:`PersonOrOrg`          ``probablepeople``   person / brand on candidate names, from a trained CRF
:class:`StoreContext`         ``store_context``    person / brand from scheduling or shopping words around a name
:class:`StoreAbbreviations`   ``store_abbrev``     ``O``, surely, on store codes (SKU, ETA, POS, "bay 4")
============================  ===================  ==============================================================

>>> [lf.name for lf in default_functions(roster=["Ingrid Okonkwo"])]
['champion', 'names_gazetteer', 'brand_lexicon', 'time_rules', 'probablepeople', 'store_context', 'store_abbrev']
"""

from __future__ import annotations

from collections.abc import Iterable

from labeling.annotation.base import LabelingFunction
from labeling.annotation.lf_champion import ChampionSlots
from labeling.annotation.lf_gazetteers import BrandGazetteer, NameGazetteer
from labeling.annotation.lf_lexicons import Roster
from labeling.annotation.lf_probablepeople import PersonOrOrg
from labeling.annotation.lf_store import StoreAbbreviations, StoreContext
from labeling.annotation.lf_time import TimeExpressions

__all__ = [
    "BrandGazetteer", "ChampionSlots", "NameGazetteer", "PersonOrOrg", "StoreAbbreviations", "StoreContext",
    "TimeExpressions", "default_functions",
]


def default_functions(roster: Iterable[str] = ()) -> list[LabelingFunction]:
    """Every labeling function of this module; ``roster`` is the staff names accepted so far (any words)."""
    accepted = Roster(roster)  # read once, shared by the three functions that know names
    return [
        ChampionSlots(),
        NameGazetteer(accepted),
        BrandGazetteer(),
        TimeExpressions(),
        PersonOrOrg(accepted),
        StoreContext(accepted),
        StoreAbbreviations(),
    ]
