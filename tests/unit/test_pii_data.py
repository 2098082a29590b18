"""The word lists shipped with nlumon.pii stay in step with the retail generator."""

from __future__ import annotations

import re

from model_runtime.data import lexicon, templates
from nlumon.pii import brand_names, common_words, cue_stop_words, given_names, product_words


def test_the_brand_lexicon_holds_every_generator_brand_and_the_person_named_ones():
    generator = {b for brands in (lexicon.BRANDS, lexicon.UNSEEN_BRANDS) for values in brands.values() for b in values}
    assert generator <= brand_names()
    assert {"calvin klein", "tommy hilfiger", "ralph lauren", "michael kors", "kate spade", "ben & jerry's",
            "tory burch", "vera wang", "martha stewart", "jordan", "levi's", "hugo boss", "marc jacobs",
            "giorgio armani", "betty crocker", "dr martens", "paul mitchell", "ted baker"} <= brand_names()


def test_every_generator_word_is_a_common_word_and_product_nouns_are_product_words():
    words = set()
    for phrases in (lexicon.STORES, lexicon.DEPARTMENTS, lexicon.COLORS, lexicon.SIZES, lexicon.DATE_TIMES,
                    lexicon.PRICES, lexicon.QUANTITY_PHRASES):
        words |= {w for phrase in phrases for w in phrase.split() if not w.isdigit()}
    products = {w for table in (lexicon.PRODUCTS, lexicon.UNSEEN_PRODUCTS) for values in table.values()
                for phrase in values for w in phrase.split()}
    heads = {phrase.split()[-1] for table in (lexicon.PRODUCTS, lexicon.UNSEEN_PRODUCTS)
             for values in table.values() for phrase in values}
    for table in (templates.SHOPPER_TEMPLATES, templates.ASSOCIATE_TEMPLATES):
        for texts in table.values():
            words |= {w for text in texts for w in re.split(r"[\s\[\]()|_]+", re.sub(r"\{\w+\}", " ", text)) if w}
    assert words | products <= common_words()
    assert heads <= product_words() and "brown" not in product_words()  # nouns, not modifiers


def test_no_generator_person_name_is_a_cue_stop_word():
    people = set(lexicon.PEOPLE_FIRST) | set(lexicon.UNSEEN_PEOPLE_FIRST) | set(lexicon.UNSEEN_PEOPLE_LAST)
    assert not people & cue_stop_words()
    # names that are also brands, on purpose: the generator's ambiguous ones, and Tiffany (& Co.)
    assert (people - set(lexicon.AMBIGUOUS_NAMES)) & brand_names() <= {"tiffany"}


def test_the_lists_ship_with_the_package():
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "data/*.txt" in config["tool"]["setuptools"]["package-data"]["nlumon"]
    assert len(given_names()) > 4000
