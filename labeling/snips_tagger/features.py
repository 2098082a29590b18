"""Token features for the tagger, chosen to carry over from SNIPS requests to lower-case store-log text.

SNIPS asks for music, restaurants and weather; store associates ask about shifts, aisles and deliveries.
Word identities alone would only learn SNIPS's vocabulary, so each token also gets features that mean the
same thing in both places: its word shape, suffixes, whether it is a Census given name or surname
(:func:`nlumon.pii.given_names`, :func:`nlumon.pii.surnames` — a real NER model knows names too) or an
everyday word (:func:`nlumon.pii.common_words`), and the same for its neighbours.

Everything is lower-cased (store logs are ASR-style lower case), and a token is made safe for the C library
first: NUL and unencodable surrogates replaced, at most :data:`MAX_TOKEN_CHARS` characters kept. Edge
punctuation and a possessive ``'s`` come off the word and become features of their own ("jordan's",
"tomorrow?"), since SNIPS has next to no punctuation.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Sequence

#: Bump when the features change: a model records the version it was trained with and refuses another.
FEATURE_VERSION = 1
MAX_TOKEN_CHARS = 40
_SHAPE_RUNS = re.compile(r"(.)\1+")
# General English knowledge of dates and times (what any NER model knows), so that a weekday — rare in SNIPS,
# whose time ranges are mostly months, hours and "now" — looks like the months and hours it did learn.
TIME_WORDS = frozenset("""
    monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec
    today tonight tomorrow yesterday now noon midnight midday morning afternoon evening night dawn dusk
    sunrise sunset weekend weekday weekends weekdays second seconds minute minutes hour hours day days week
    weeks fortnight month months year years am pm a.m. p.m. o'clock oclock christmas easter thanksgiving
    halloween eve holiday holidays
""".split())
NUMBER_WORDS = frozenset("""
    zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen
    seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred half quarter
""".split())
ORDINAL_WORDS = frozenset("""
    first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth
    fifteenth sixteenth seventeenth eighteenth nineteenth twentieth thirtieth
""".split())
_ORDINAL_DIGITS = re.compile(r"\d+(?:st|nd|rd|th)")
_EDGE_PUNCTUATION = re.compile(r"^[^\w]+|[^\w]+$")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})


def clean_token(token: object) -> str:
    """Lower case, NFKC, no NUL/surrogates/whitespace, at most :data:`MAX_TOKEN_CHARS` characters.

    >>> clean_token("Taylor")
    'taylor'
    >>> clean_token("a\\x00b\\ud800 c")
    'a?b??c'
    >>> clean_token("")
    ''
    """
    text = token if isinstance(token, str) else str(token)
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")  # lone surrogates -> "?"
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join("?" if character == "\x00" or character.isspace() else character for character in text)
    return text[:MAX_TOKEN_CHARS]


def read_word(token: object) -> tuple[str, list[str]]:
    """The word a token holds (edge punctuation and a possessive ``'s`` off) and what was taken off.

    >>> read_word("Jordan's"), read_word("tomorrow?"), read_word("?"), read_word("5:30")
    (('jordan', ['possessive']), ('tomorrow', ['punctuation']), ('?', []), ('5:30', []))
    """
    cleaned = clean_token(token).translate(_APOSTROPHES)
    word = _EDGE_PUNCTUATION.sub("", cleaned)
    marks = ["punctuation"] if word != cleaned else []
    if word.endswith("'s") and len(word) > 2:
        word, marks = word[:-2], [*marks, "possessive"]
    return (word, marks) if word else (cleaned, [])


def word_shape(word: str) -> str:
    """Letters -> ``x``, digits -> ``d``, runs collapsed, other characters kept.

    >>> [word_shape(w) for w in ("tomorrow", "5pm", "10:30", "o'neil", "")]
    ['x', 'dx', 'd:d', "x'x", '']
    """
    shape = "".join("x" if c.isalpha() else "d" if c.isdigit() else c for c in word)
    return _SHAPE_RUNS.sub(r"\1", shape)


@functools.cache
def _gazetteers() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    from nlumon.pii import common_words, given_names, surnames

    return given_names(), surnames(), common_words()


def gazetteer_fingerprint() -> str:
    """SHA-256 over the name and word lists the features read (recorded with a trained model)."""
    digest = hashlib.sha256()
    for words in _gazetteers():
        digest.update("\n".join(sorted(words)).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _word_flags(word: str) -> list[str]:
    given, family, common = _gazetteers()
    flags = []
    if word in given:
        flags.append("given")
    if word in family:
        flags.append("surname")
    if word in common:
        flags.append("common")
    if word in TIME_WORDS:
        flags.append("timeword")
    if word in NUMBER_WORDS or word.isdigit():
        flags.append("number")
    if word in ORDINAL_WORDS or _ORDINAL_DIGITS.fullmatch(word):
        flags.append("ordinal")
    if not flags and word.isalpha():
        flags.append("unknown")  # neither a name nor an everyday word: a name SNIPS never saw, or a rare word
    return flags


def _token_features(words: Sequence[str], flags: Sequence[list[str]], marks: list[str], index: int) -> list[str]:
    word = words[index]
    features = [*marks,
        "bias", f"w={word}", f"shape={word_shape(word)}", f"suf2={word[-2:]}", f"suf3={word[-3:]}",
        f"pre3={word[:3]}", f"len={min(len(word), 8)}",
    ]
    features += [f"f={flag}" for flag in flags[index]]
    if any(c.isdigit() for c in word):
        features.append("has_digit")
    for offset in (-2, -1, 1, 2):
        position = index + offset
        if 0 <= position < len(words):
            features.append(f"w{offset:+d}={words[position]}")
            features += [f"f{offset:+d}={flag}" for flag in flags[position]]
        else:
            features.append(f"w{offset:+d}=<edge>")
    if index > 0:
        features.append(f"w-1|w={words[index - 1]}|{word}")
    if index + 1 < len(words):
        features.append(f"w|w+1={word}|{words[index + 1]}")
    return features


def sentence_features(tokens: Sequence[object]) -> list[list[str]]:
    """One list of string features per token (crfsuite's binary attributes).

    >>> features = sentence_features(["Play", "Adele"])
    >>> "w=adele" in features[1] and "w-1=play" in features[1] and "f=given" in features[1]
    True
    """
    read = [read_word(token) for token in tokens]
    words = [word for word, _ in read]
    flags = [_word_flags(word) for word in words]
    return [_token_features(words, flags, marks, index) for index, (_, marks) in enumerate(read)]
