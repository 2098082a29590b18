"""Personal data handling before anything is stored or published.

Raw utterance text never reaches ClickHouse: rows keep a keyed hash of it (HMAC-SHA256 with a
secret key from the settings) so duplicates can be found without the text being recoverable.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata


def normalise(text: str) -> str:
    """Case-, width- and whitespace-insensitive form used for hashing and deduplication.

    >>> normalise("  Add  MILK to my cart ")
    'add milk to my cart'
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_hash(key: str, text: str) -> str:
    """Keyed hash (hex) of the normalised text.

    >>> text_hash("k", "Add milk") == text_hash("k", "add  milk")
    True
    >>> text_hash("k", "add milk") == text_hash("other key", "add milk")
    False
    """
    return hmac.new(key.encode(), normalise(text).encode(), hashlib.sha256).hexdigest()
