"""Sentiment sentences (SST and a Rotten Tomatoes stand-in) as token-embedding data sets.

Lowell 2024 trains on the Stanford Sentiment Treebank: "We zero-padded or cropped all
phrases in SST to a fixed length of 32 words and generated word embeddings using the
RoBERTA base encoder [...] we flattened the input data into vectors", with training
subsets of 461, 922, 1844 and 3689 samples and cross-entropy loss (``docs/methods.md`` §8).
This module reads the text in three formats (each parser returns ``(text, label)`` pairs
and names ``file:line`` in every error) and :func:`load_sst` turns it into a
:class:`~eoslab.data.base.Dataset` with X [N, 32, D] via :mod:`eoslab.data.embed`
(``Dataset.flatten`` gives the MLP's [N, 32·D] input).

Sources (``source=``):

- ``"sst"`` — the Stanford release's PTB trees (``trainDevTestTrees_PTB.zip`` →
  ``trees/train.txt``, ``dev.txt``, ``test.txt``; one tree per line such as
  ``(3 (2 It) (4 (2 's) (3 good)))``, every node labelled 0..4). Sentence level takes the
  root label; ``phrases=True`` takes every subtree (leaves included), as SST's phrase-level
  task does. :func:`parse_sst_trees`.
- ``"glue"`` — GLUE's SST-2 TSV files (``SST-2/train.tsv``, ``dev.tsv``: header
  ``sentence<TAB>label``; ``test.tsv``: header ``index<TAB>sentence``, no labels).
  :func:`parse_glue_sst2`.
- ``"rt"`` — 10,605 Rotten Tomatoes review snippets with mean human sentiment ratings
  (−4…+4) from Hutto & Gilbert's VADER study (ICWSM 2014), file
  ``movieReviewSnippets_GroundTruth.txt`` (tab-separated id, rating, text). It ships in the
  *sdist* of vaderSentiment 3.3.2 (inside ``additional_resources/hutto_ICWSM_2014.tar.gz``;
  the wheel does not have it), so it can be had from PyPI without any other network access::

      pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d DIR

  with DIR = ``~/.cache/eoslab/vaderSentiment`` (``$EOSLAB_CACHE/vaderSentiment``), where
  it is found without further arguments.

  :func:`load_rotten_tomatoes` reads it from that tarball, the inner tarball or the
  extracted text file. The snippets are the Rotten Tomatoes sentences of Pang & Lee that
  SST itself annotated (the first snippet is SST's first training sentence), so with
  sign-of-rating labels they are an SST-like binary task available offline. **They are not
  SST**: the labels come from other raters.

Labels: ``labels="fine"`` keeps SST's five classes 0..4 (very negative … very positive);
``labels="binary"`` maps 0, 1 → 0 (negative) and 3, 4 → 1 (positive) and drops the neutral
2, as SST-2 does; GLUE is binary already; RT's label is the sign of the mean rating
(> 0 → 1, < 0 → 0), and the 37 snippets rated exactly 0 in the release are dropped. The
number of dropped items is recorded in the provenance.

Text: SST tree leaves are joined with single spaces (the release's tokenisation, e.g.
``it 's``) with the PTB escapes ``-LRB-``/``-RRB-`` etc. turned back into brackets; GLUE and
RT text is kept as written apart from surrounding whitespace (RT writes double quotes as
``''``).

Licences: the Stanford SST release and GLUE's SST-2 state no licence of their own (cite
Socher et al. 2013, and Wang et al. 2019 for GLUE); the RT snippet file is part of the
MIT-licensed vaderSentiment 3.3.2 sdist (cite Hutto & Gilbert 2014; the sentences are
Pang & Lee's).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eoslab.data import _download
from eoslab.data._text import SSTFormatError, _read_lines
from eoslab.data.base import Dataset, Provenance
from eoslab.data.embed import embed_corpus
from eoslab.data.rotten_tomatoes import (
    RT_FILE,
    RT_SHA256,
    _read_rt,
    load_rotten_tomatoes,
    parse_rt_snippets,
)

__all__ = [
    "BINARY_CLASSES",
    "FINE_CLASSES",
    "RT_FILE",
    "RT_SHA256",
    "SSTFormatError",
    "TextCorpus",
    "embed_command",
    "load_rotten_tomatoes",
    "load_sst",
    "parse_glue_sst2",
    "parse_rt_snippets",
    "parse_sst_trees",
    "read_corpus",
    "to_binary",
]

FINE_CLASSES = ["very negative", "negative", "neutral", "positive", "very positive"]
"""Class names of SST's five labels 0..4."""

BINARY_CLASSES = ["negative", "positive"]
"""Class names of the binary task (SST-2, GLUE SST-2, RT sign of rating)."""

_SST_SOURCE = (
    'Stanford Sentiment Treebank: R. Socher et al., "Recursive deep models for semantic '
    'compositionality over a sentiment treebank", EMNLP 2013 (nlp.stanford.edu/sentiment, '
    "PTB trees)"
)
_SST_LICENCE = "no licence stated in the Stanford release; cite Socher et al. (2013)"
_GLUE_SOURCE = (
    'GLUE SST-2: A. Wang et al., "GLUE: a multi-task benchmark and analysis platform for '
    'natural language understanding", ICLR 2019, built from the Stanford Sentiment Treebank '
    "(Socher et al. 2013)"
)
_GLUE_LICENCE = (
    "no licence stated for SST-2 by GLUE or the Stanford release; cite Socher et al. (2013) "
    "and Wang et al. (2019)"
)
_RT_SOURCE = (
    "Rotten Tomatoes review snippets with mean human sentiment ratings: C.J. Hutto and "
    'E. Gilbert, "VADER: a parsimonious rule-based model for sentiment analysis of social media '
    f'text", ICWSM 2014; file {RT_FILE} from the vaderSentiment 3.3.2 sdist '
    "(additional_resources/hutto_ICWSM_2014.tar.gz); sentences from B. Pang and L. Lee's "
    "Rotten Tomatoes data"
)
_RT_LICENCE = (
    "MIT (vaderSentiment 3.3.2, (c) 2016 C.J. Hutto); cite Hutto & Gilbert (2014) and Pang & Lee"
)
_PTB_ESCAPES = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
}
_TREE_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_SOURCES = {
    "sst": "sst",
    "trees": "sst",
    "glue": "glue",
    "sst2": "glue",
    "sst-2": "glue",
    "rt": "rt",
    "rotten_tomatoes": "rt",
    "vader": "rt",
}
_SPLITS = {"train": "train", "dev": "dev", "validation": "dev", "val": "dev", "test": "test"}


# ---------------------------------------------------------------------- SST trees


def _parse_tree(
    line: str, origin: str, lineno: int
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Leaves and nodes (label, first leaf, end leaf) in pre-order of one PTB tree line."""

    def fail(message: str):
        raise SSTFormatError(origin, lineno, message)

    tokens = list(_TREE_TOKEN.finditer(line))
    leaves: list[str] = []
    nodes: list[list[int]] = []
    stack: list[int] = []
    i, closed = 0, False
    while i < len(tokens):
        tok, col = tokens[i].group(), tokens[i].start() + 1
        if closed:
            fail(f"text after the tree's closing ')' at column {col}: {tok!r}")
        if tok == "(":
            if i + 1 >= len(tokens) or tokens[i + 1].group() in ("(", ")"):
                fail(f"expected a label after '(' at column {col}")
            label = tokens[i + 1].group()
            if not (label.isdigit() and 0 <= int(label) <= 4):
                fail(f"bad label {label!r} at column {tokens[i + 1].start() + 1}: expected 0..4")
            nodes.append([int(label), len(leaves), -1])
            stack.append(len(nodes) - 1)
            i += 2
            if i < len(tokens) and tokens[i].group() not in ("(", ")"):
                word = tokens[i].group()
                leaves.append(_PTB_ESCAPES.get(word, word))
                i += 1
                if i >= len(tokens) or tokens[i].group() != ")":
                    where = f"column {tokens[i].start() + 1}" if i < len(tokens) else "end of line"
                    fail(f"expected ')' after the word {word!r} at {where}")
            continue
        if tok == ")":
            if not stack:
                fail(f"unbalanced parentheses: unexpected ')' at column {col}")
            node = nodes[stack.pop()]
            if node[1] == len(leaves):
                fail(f"empty node (label without words) closed at column {col}")
            node[2] = len(leaves)
            closed = not stack
            i += 1
            continue
        fail(f"unexpected word {tok!r} at column {col}; words must be written '(LABEL word)'")
    if stack:
        fail(f"unbalanced parentheses: {len(stack)} '(' not closed at the end of the line")
    if not nodes:
        fail("no tree on the line")
    return leaves, [(lab, a, b) for lab, a, b in nodes]


def parse_sst_trees(
    path: str | os.PathLike, *, phrases: bool = False, unique: bool = True
) -> list[tuple[str, int]]:
    """Read an SST PTB tree file (``trees/train.txt`` etc.): ``(text, label)``, label 0..4.

    Each non-blank line holds one tree, e.g. ``(3 (2 It) (4 (2 's) (3 good)))``: a node is
    ``(LABEL word)`` or ``(LABEL child child …)`` with LABEL in 0..4. A node's text is its
    leaves joined by single spaces, PTB escapes (``-LRB-`` …) turned back into brackets.

    Args:
        path: the tree file (UTF-8).
        phrases: False: one item per sentence with the root's label. True: one item per
            node (every subtree, leaves included) in pre-order, sentence by sentence.
        unique: with ``phrases``, keep only the first occurrence of each (text, label)
            (SST labels a phrase the same wherever it occurs, so this keeps one item per
            distinct phrase); ignored for sentences.

    Returns:
        List of (text, label) with fine labels 0..4 (:data:`FINE_CLASSES`).

    Raises:
        SSTFormatError: on a malformed tree (unbalanced parentheses, a label outside 0..4,
            a bare word, text after the tree, invalid UTF-8); the message starts
            ``file:line:``.
    """
    origin = str(path)
    items: list[tuple[str, int]] = []
    seen: set[tuple[str, int]] = set()
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        leaves, nodes = _parse_tree(line, origin, lineno)
        if not phrases:
            items.append((" ".join(leaves), nodes[0][0]))
            continue
        for label, a, b in nodes:
            item = (" ".join(leaves[a:b]), label)
            if unique:
                if item in seen:
                    continue
                seen.add(item)
            items.append(item)
    return items


def to_binary(items: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], int]:
    """SST-2's binary labels from fine ones: 0, 1 → 0; 3, 4 → 1; neutral 2 dropped.

    Args:
        items: (text, label) with labels 0..4.

    Returns:
        (the kept items with labels 0/1, the number of neutral items dropped).

    Raises:
        ValueError: if a label is not in 0..4.
    """
    kept, dropped = [], 0
    for text, label in items:
        if label in (0, 1):
            kept.append((text, 0))
        elif label in (3, 4):
            kept.append((text, 1))
        elif label == 2:
            dropped += 1
        else:
            raise ValueError(f"fine SST labels must be 0..4, got {label!r} for {text!r}")
    return kept, dropped


# ---------------------------------------------------------------------- GLUE SST-2


def parse_glue_sst2(path: str | os.PathLike) -> list[tuple[str, int | None]]:
    """Read a GLUE SST-2 TSV file: ``(sentence, label)``, label 0/1, or None for test.

    Train and dev files start with the header ``sentence<TAB>label`` and hold one
    ``sentence<TAB>0|1`` per line; the test file's header is ``index<TAB>sentence`` and its
    lines ``index<TAB>sentence`` carry no label. Fields are split on tabs only (no quoting:
    sentences contain quote characters).

    Args:
        path: the ``.tsv`` file (UTF-8).

    Returns:
        List of (sentence, label) in file order; label is None throughout for a test file.

    Raises:
        SSTFormatError: on an unknown header, a line without exactly two fields, a label
            other than 0/1, a non-integer index or an empty sentence (``file:line:``).
    """
    origin = str(path)
    lines = _read_lines(path)
    if not lines:
        raise SSTFormatError(origin, 1, "empty file; expected a header line")
    header = [h.strip().lower() for h in lines[0].split("\t")]
    if header == ["sentence", "label"]:
        labelled = True
    elif header == ["index", "sentence"]:
        labelled = False
    else:
        raise SSTFormatError(
            origin,
            1,
            "expected the header 'sentence<TAB>label' (train/dev) or 'index<TAB>sentence' "
            f"(test), got {lines[0]!r}",
        )
    items: list[tuple[str, int | None]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise SSTFormatError(
                origin, lineno, f"expected 2 tab-separated fields, got {len(fields)}: {line!r}"
            )
        if labelled:
            sentence, label = fields[0].strip(), fields[1].strip()
            if label not in ("0", "1"):
                raise SSTFormatError(origin, lineno, f"bad label {label!r}: expected 0 or 1")
            value: int | None = int(label)
        else:
            index, sentence = fields[0].strip(), fields[1].strip()
            if not index.isdigit():
                raise SSTFormatError(origin, lineno, f"bad index {index!r}: expected an integer")
            value = None
        if not sentence:
            raise SSTFormatError(origin, lineno, "empty sentence")
        items.append((sentence, value))
    return items


# ---------------------------------------------------------------------- corpora


@dataclass(frozen=True)
class TextCorpus:
    """Texts and labels read from one file, with what :func:`load_sst` records about them.

    Attributes:
        texts: the texts, in file order (after dropping unlabelled-in-this-task items).
        labels: class labels (indices into ``classes``), or None for GLUE's unlabelled test
            split.
        classes: class names.
        name: data-set name (``"sst"``, ``"sst2"``, ``"rt_snippets"``).
        file: the file read (``archive!member`` inside a tarball).
        checksum: ``"sha256:…"`` of that file's bytes.
        source: where the data come from.
        licence: licence of the data.
        notes: what was read and dropped.
    """

    texts: list[str]
    labels: list[int] | None
    classes: list[str]
    name: str
    file: str
    checksum: str
    source: str
    licence: str
    notes: str


def _resolve_file(path, split, names, kind) -> tuple[Path, str]:
    if path is None:
        raise ValueError(f"source {kind!r} needs path= (a file or a folder with {names})")
    path = Path(path).expanduser()
    if path.is_file():
        if split is not None:
            raise ValueError(f"give either a file ({path}) or a folder with split=, not both")
        return path, path.stem
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    split = "train" if split is None else split
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
    split = _SPLITS[split]
    ext = ".txt" if kind == "sst" else ".tsv"
    sub = "trees" if kind == "sst" else "SST-2"
    for candidate in (path / f"{split}{ext}", path / sub / f"{split}{ext}"):
        if candidate.is_file():
            return candidate, split
    raise FileNotFoundError(f"no {split}{ext} in {path} or {path / sub}")


def read_corpus(
    source: str = "sst",
    *,
    path: str | os.PathLike | None = None,
    split: str | None = None,
    labels: str = "binary",
    phrases: bool = False,
) -> TextCorpus:
    """Read the texts and labels of one split of a source, without embedding them.

    Arguments as in :func:`load_sst`; GLUE's test split gives ``labels=None``.

    Raises:
        ValueError: on an unknown source, split or label mode, or a mode the source lacks.
        FileNotFoundError: if the file is missing.
        SSTFormatError: on a malformed file.
    """
    kind = _SOURCES.get(str(source).lower())
    if kind is None:
        raise ValueError(f"unknown SST source {source!r}; expected one of {sorted(_SOURCES)}")
    if labels not in ("binary", "fine"):
        raise ValueError(f"labels must be 'binary' or 'fine', got {labels!r}")
    if phrases and kind != "sst":
        raise ValueError("phrases=True needs the tree format (source='sst')")

    if kind == "rt":
        if split not in (None, "all"):
            raise ValueError(f"the RT snippets have no splits (split=None or 'all'), got {split!r}")
        if labels != "binary":
            raise ValueError("the RT snippets have binary labels only (sign of the mean rating)")
        rated, origin, checksum = _read_rt(path)
        kept = [(t, int(r > 0)) for t, r in rated if r != 0]
        known = "matches" if checksum == f"sha256:{RT_SHA256}" else "DIFFERS FROM"
        notes = (
            f"{len(rated)} snippets; label = sign of the mean rating (1 positive, 0 negative); "
            f"{len(rated) - len(kept)} rated exactly 0 dropped; file {known} the vaderSentiment "
            "3.3.2 release"
        )
        texts, ys = [t for t, _ in kept], [y for _, y in kept]
        return TextCorpus(
            texts,
            ys,
            list(BINARY_CLASSES),
            "rt_snippets",
            origin,
            checksum,
            _RT_SOURCE,
            _RT_LICENCE,
            notes,
        )

    file, split_name = _resolve_file(path, split, "train/dev/test files", kind)
    checksum = "sha256:" + _download.file_digest(file)
    if kind == "glue":
        if labels != "binary":
            raise ValueError(
                "GLUE SST-2 has binary labels only; use source='sst' for labels='fine'"
            )
        items = parse_glue_sst2(file)
        unlabelled = bool(items) and items[0][1] is None
        notes = f"GLUE SST-2 {split_name}: {len(items)} sentences" + (
            " (test split: no labels)" if unlabelled else "; labels 0 negative, 1 positive"
        )
        return TextCorpus(
            [t for t, _ in items],
            None if unlabelled else [int(y) for _, y in items],
            list(BINARY_CLASSES),
            "sst2",
            str(file),
            checksum,
            _GLUE_SOURCE,
            _GLUE_LICENCE,
            notes,
        )

    fine = parse_sst_trees(file, phrases=phrases)
    level = "phrases (every subtree, distinct (text, label))" if phrases else "sentences (root)"
    if labels == "fine":
        kept, classes = fine, list(FINE_CLASSES)
        notes = f"SST {split_name} {level}: {len(fine)} items, labels 0..4"
    else:
        kept, dropped = to_binary(fine)
        classes = list(BINARY_CLASSES)
        notes = (
            f"SST {split_name} {level}: {len(fine)} items; binary labels 0,1 → 0 negative, "
            f"3,4 → 1 positive; {dropped} neutral (2) dropped"
        )
    return TextCorpus(
        [t for t, _ in kept],
        [y for _, y in kept],
        classes,
        "sst",
        str(file),
        checksum,
        _SST_SOURCE,
        _SST_LICENCE,
        notes,
    )


def _limit(corpus: TextCorpus, limit: int | None) -> TextCorpus:
    if limit is None:
        return corpus
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if limit >= len(corpus.texts):
        return corpus
    labels = None if corpus.labels is None else corpus.labels[:limit]
    notes = f"{corpus.notes}; first {limit} of {len(corpus.texts)} kept (limit)"
    return TextCorpus(
        corpus.texts[:limit],
        labels,
        corpus.classes,
        corpus.name,
        corpus.file,
        corpus.checksum,
        corpus.source,
        corpus.licence,
        notes,
    )


def load_sst(
    source: str = "sst",
    *,
    path: str | os.PathLike | None = None,
    split: str | None = None,
    labels: str = "binary",
    phrases: bool = False,
    encoder: str | os.PathLike = "minilm",
    max_tokens: int = 32,
    cache_dir: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    limit: int | None = None,
) -> Dataset:
    """Sentiment sentences as a Dataset of per-token encoder embeddings, X [N, T, D].

    Texts are read (:func:`read_corpus`) and embedded (:func:`eoslab.data.embed.embed_corpus`:
    the encoder's last hidden states per token, cropped to ``max_tokens`` tokens including
    the special tokens before encoding, zero at padded positions), as Lowell 2024 did with
    RoBERTa-base and 32 positions. Embeddings are cached on disk (keyed by the texts, the
    encoder and ``max_tokens``). For the paper's MLP use ``.flatten()`` → [N, T·D].

    Args:
        source: ``"sst"`` (PTB trees), ``"glue"`` (GLUE SST-2 TSV) or ``"rt"`` (Rotten
            Tomatoes snippets from the vaderSentiment sdist).
        path: for ``"sst"``/``"glue"`` a file, or a folder holding ``{split}.txt`` /
            ``{split}.tsv`` (directly or under ``trees/`` / ``SST-2/``); for ``"rt"`` as in
            :func:`load_rotten_tomatoes` (None searches the default places).
        split: ``"train"``, ``"dev"`` (``"validation"``) or ``"test"`` to pick a file in a
            folder (default ``"train"``); leave None when ``path`` is a file or for ``"rt"``.
        labels: ``"binary"`` (neutral dropped; the only choice for GLUE and RT) or ``"fine"``
            (SST's five classes).
        phrases: SST only: every subtree instead of whole sentences.
        encoder: ``"minilm"``, ``"roberta-base"`` or a local model directory
            (:func:`eoslab.data.embed.resolve_encoder`).
        max_tokens: T, token positions per text (the paper: 32).
        cache_dir: cache root; default ``$EOSLAB_CACHE`` or ``~/.cache/eoslab``.
        dtype: floating dtype of X (embeddings are computed in float32).
        device: where the encoder runs and X is returned.
        batch_size: texts per encoder forward pass.
        progress: show a progress bar while embedding.
        limit: keep only the first ``limit`` items (after label mapping).

    Returns:
        Dataset named ``"sst"``, ``"sst2"`` or ``"rt_snippets"`` with X [N, T, D], int64
        labels, classes :data:`BINARY_CLASSES` or :data:`FINE_CLASSES`, and provenance
        (source, licence, SHA-256 of the text file, encoder and cropping in the notes).

    Raises:
        ValueError: on bad arguments, or GLUE's unlabelled test split.
        FileNotFoundError: if the text file or the encoder is missing.
        SSTFormatError: on a malformed text file.
        ImportError: if transformers is not installed (``pip install 'eoslab[text]'``).
    """
    corpus = read_corpus(source, path=path, split=split, labels=labels, phrases=phrases)
    corpus = _limit(corpus, limit)
    if corpus.labels is None:
        raise ValueError(
            f"{corpus.file} is GLUE's unlabelled test split; a Dataset needs labels (use "
            "read_corpus or `eoslab data embed` for its texts)"
        )
    if not corpus.texts:
        raise ValueError(f"{corpus.file} gave no labelled texts ({corpus.notes})")
    emb = embed_corpus(
        corpus.texts,
        encoder=encoder,
        max_tokens=max_tokens,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        progress=progress,
        cache_dir=cache_dir,
    )
    notes = (
        f"{corpus.notes}. X[n, t] = last hidden state of {emb.encoder.description} at token t, "
        f"tokens incl. special tokens cropped to {max_tokens} before encoding "
        f"({emb.n_cropped} of {len(corpus.texts)} texts cropped), zero at padded positions; "
        f"computed in float32, returned as {dtype}; texts {emb.corpus_checksum}"
    )
    provenance = Provenance(
        source=f"{corpus.source}; file {corpus.file}",
        licence=corpus.licence,
        checksum=corpus.checksum,
        notes=notes,
    )
    y = torch.tensor(corpus.labels, dtype=torch.int64, device=emb.X.device)
    return Dataset(X=emb.X, y=y, classes=corpus.classes, provenance=provenance, name=corpus.name)


def embed_command(
    source: str,
    *,
    path: str | os.PathLike | None = None,
    split: str | None = None,
    labels: str = "binary",
    encoder: str | os.PathLike = "minilm",
    max_tokens: int = 32,
    limit: int | None = None,
    out: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    refresh: bool = False,
) -> str:
    """What ``eoslab data embed`` does: read, embed (using the cache), optionally save.

    ``out`` (a ``.npz``, written without pickle) gets X float32 [N, T, D], lengths [N],
    texts (unicode array), y int64 [N] when the split is labelled, classes, and a JSON
    ``meta`` string (source, file, checksum, encoder, cache file).

    Returns:
        The report printed by the CLI (shape, cropping, cache file, output file).
    """
    corpus = _limit(read_corpus(source, path=path, split=split, labels=labels), limit)
    if not corpus.texts:
        raise ValueError(f"{corpus.file} gave no texts ({corpus.notes})")
    emb = embed_corpus(
        corpus.texts,
        encoder=encoder,
        max_tokens=max_tokens,
        batch_size=batch_size,
        device=device,
        progress=True,
        cache_dir=cache_dir,
        refresh=refresh,
    )
    shape = ", ".join(str(s) for s in emb.X.shape)
    lines = [
        f"{corpus.name}: {corpus.notes}",
        f"X shape [{shape}] float32 (N, tokens, D) from {emb.encoder.description}; "
        f"{emb.n_cropped} of {len(corpus.texts)} texts cropped to {max_tokens} tokens",
        f"cache: {emb.cache_path} ({'reused' if emb.from_cache else 'written'})",
    ]
    if out is not None:
        out = Path(out)
        if out.suffix != ".npz":
            out = out.with_name(out.name + ".npz")
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(
            name=corpus.name,
            source=corpus.source,
            licence=corpus.licence,
            file=corpus.file,
            checksum=corpus.checksum,
            notes=corpus.notes,
            encoder=emb.encoder.description,
            encoder_fingerprint=emb.encoder.fingerprint,
            max_tokens=max_tokens,
            corpus_checksum=emb.corpus_checksum,
            cache=str(emb.cache_path),
        )
        arrays = dict(
            X=emb.X.cpu().float().numpy(),
            lengths=emb.lengths.numpy(),
            texts=np.array(corpus.texts, dtype=str),
            classes=np.array(corpus.classes, dtype=str),
            meta=np.array(json.dumps(meta)),
        )
        if corpus.labels is not None:
            arrays["y"] = np.array(corpus.labels, dtype=np.int64)
        np.savez(out, **arrays)
        lines.append(f"wrote {out}")
    return "\n".join(lines)
