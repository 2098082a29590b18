"""An independent person/time tagger trained on public data (SNIPS, CC0), for weak supervision.

It plays the part of the off-the-shelf NER model a team adds to its labeling functions: trained elsewhere, on
other text, so that its mistakes are its own (spaCy's English models are not on PyPI, and nothing is downloaded
at run time). A linear-chain CRF (crfsuite) over lower-cased word, shape, suffix, name-list and neighbour
features. Modules: ``corpus`` (the shipped, mapped SNIPS splits), ``features``, ``tagger`` (verified loading,
tags and marginals), ``train`` (``python -m labeling.snips_tagger.train``), ``evaluate``. The labeling function
is :class:`labeling.annotation.lf_snips.SnipsTagger`; data source, licence, mapping and figures: README.md.
"""
