"""Text → wordpiece ids with first-subword alignment; shared by training and every runtime.

Torch-free on purpose: the ONNX runtime imports this. Words are whitespace tokens (the unit of the
BIO tags); each word is labelled on its first wordpiece, the other pieces are ignored.

    >>> words = whitespace_words("  add two  jordans")
    >>> [(w.text, w.start, w.end) for w in words]
    [('add', 2, 5), ('two', 6, 9), ('jordans', 11, 18)]
    >>> bucket_length(13), bucket_length(16), bucket_length(70, multiple=8, cap=64)
    (16, 16, 64)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_WORD = re.compile(r"\S+")
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class Word:
    text: str
    start: int  # char offset into the original text
    end: int


def whitespace_words(text: str) -> list[Word]:
    return [Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def bucket_length(length: int, multiple: int = 8, cap: int = 512) -> int:
    """Round a padded length up to a multiple (few distinct shapes: caches and CUDA graphs reuse them)."""
    return min(cap, ((length + multiple - 1) // multiple) * multiple)


@dataclass
class EncodedBatch:
    """A padded batch. ``first_piece[i, w]`` is the position of word w's first wordpiece, -1 if cut off."""

    input_ids: np.ndarray  # int64 [B, L]
    attention_mask: np.ndarray  # int64 [B, L]
    first_piece: np.ndarray  # int64 [B, W]
    word_counts: np.ndarray  # int64 [B]
    piece_counts: np.ndarray  # int64 [B] wordpieces without specials, before truncation
    unk_counts: np.ndarray  # int64 [B]


class WordpieceEncoder:
    """Wraps a HuggingFace ``tokenizers`` fast tokenizer (tokenizer.json) for pre-split words."""

    def __init__(self, tokenizer_file: Path, max_length: int, pad_multiple: int = 8) -> None:
        from tokenizers import Tokenizer  # imported here: keeps `import model_runtime` light

        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.max_length = max_length
        self.pad_multiple = pad_multiple
        self.pad_id = self._token_id("[PAD]")
        self.unk_id = self._token_id("[UNK]")
        self.cls_id = self._token_id("[CLS]")
        self.sep_id = self._token_id("[SEP]")

    def _token_id(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer has no {token} token")
        return token_id

    def encode_words(self, batch: Sequence[Sequence[str]]) -> EncodedBatch:
        """Encode whitespace-split utterances; pads to the batch's longest, rounded to ``pad_multiple``."""
        encodings = self._tokenizer.encode_batch([list(words) or [""] for words in batch], is_pretokenized=True)
        rows, firsts, piece_counts, unk_counts = [], [], [], []
        for words, encoding in zip(batch, encodings, strict=True):
            ids, word_ids = encoding.ids, encoding.word_ids
            body = [(i, w) for i, w in zip(ids, word_ids, strict=True) if w is not None]
            piece_counts.append(len(body))
            unk_counts.append(sum(1 for i, _ in body if i == self.unk_id))
            body = body[: self.max_length - 2]
            first = [-1] * len(words)
            for position, (_, word) in enumerate(body, start=1):
                if first[word] == -1:
                    first[word] = position
            rows.append([self.cls_id, *(i for i, _ in body), self.sep_id])
            firsts.append(first)
        length = bucket_length(max(len(r) for r in rows), self.pad_multiple, self.max_length)
        input_ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = row
            mask[index, : len(row)] = 1
        max_words = max(1, max(len(f) for f in firsts))
        first_piece = np.full((len(rows), max_words), -1, dtype=np.int64)
        for index, first in enumerate(firsts):
            first_piece[index, : len(first)] = first
        return EncodedBatch(
            input_ids=input_ids,
            attention_mask=mask,
            first_piece=first_piece,
            word_counts=np.array([len(w) for w in batch], dtype=np.int64),
            piece_counts=np.array(piece_counts, dtype=np.int64),
            unk_counts=np.array(unk_counts, dtype=np.int64),
        )

    def piece_length(self, words: Sequence[str]) -> int:
        """Wordpieces incl. specials, capped at max_length (for length-sorted batching)."""
        encoding = self._tokenizer.encode(list(words) or [""], is_pretokenized=True)
        return min(len(encoding.ids), self.max_length)
