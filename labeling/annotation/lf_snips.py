"""A labeling function that asks an independent sequence tagger trained on public data (SNIPS, CC0).

It stands in for the off-the-shelf NER model a team would add to its weak-supervision mix: trained elsewhere,
on other text (music, restaurants, weather), so its mistakes are not the champion's. The tagger is a CRF in
:mod:`labeling.snips_tagger` (data, licence, training and measured F1 in its README).

Votes, per token, from the CRF's marginal probabilities (B- and I- summed per entity type):

- ``person`` or ``time`` when that type is the most probable label and its probability is at least
  ``entity_threshold`` (0.5): the confidence is the marginal itself;
- ``O`` only when the tagger is sure the token is no entity (marginal of ``O`` >= ``o_threshold``, 0.9) *and*
  the token is a word the model learnt a weight for (:meth:`~labeling.snips_tagger.tagger.CRFModel.knows`),
  with the marginal as confidence. On words it never saw the CRF's ``O`` is confident and often wrong out of
  domain: on 500 generated store-associate utterances, 110 of 168 colleagues' name tokens got ``O`` >= 0.9
  (65 even at 0.995), so no threshold fixes it; restricted to known words, 6 did. An unfamiliar word is an
  abstention, not a vote against the name dictionaries;
- abstain otherwise.

Marginals are the CRF's own, not recalibrated on store text: the aggregator's learnt weights (or the label
model's accuracies) are what discount them. The model loads once per process; odd tokens (empty, control
characters, lone surrogates, very long) are cleaned by the feature extractor, so ``apply`` does not raise.
"""

from __future__ import annotations

from labeling.annotation.base import OTHER, PERSON, TIME, Utterance, Vote
from labeling.snips_tagger.tagger import CRFModel, default_model


class SnipsTagger:
    """The SNIPS CRF as a labeling function (``name = "snips_tagger"``).

    >>> votes = SnipsTagger().apply(Utterance(("play", "music", "by", "taylor", "swift")))
    >>> [vote.label if vote else None for vote in votes]
    ['O', 'O', 'O', 'person', 'person']
    """

    name = "snips_tagger"

    def __init__(self, model: CRFModel | None = None, *, entity_threshold: float = 0.5,
                 o_threshold: float = 0.9) -> None:
        if not 0.0 < entity_threshold <= 1.0 or not 0.0 < o_threshold <= 1.0:
            raise ValueError(f"thresholds must be in (0, 1], got {entity_threshold!r} and {o_threshold!r}")
        self._model = model
        self.entity_threshold = entity_threshold
        self.o_threshold = o_threshold

    @property
    def model(self) -> CRFModel:
        return self._model if self._model is not None else default_model()

    def apply(self, utterance: Utterance) -> list[Vote | None]:
        model = self.model
        votes: list[Vote | None] = []
        for token, probabilities in zip(utterance.tokens, model.label_probabilities(utterance.tokens), strict=True):
            label, confidence = probabilities.best()
            confidence = min(1.0, confidence)
            if label in (PERSON, TIME) and confidence >= self.entity_threshold:
                votes.append(Vote(label, confidence))
            elif label == OTHER and confidence >= self.o_threshold and model.knows(token):
                votes.append(Vote(OTHER, confidence))
            else:
                votes.append(None)
        return votes
