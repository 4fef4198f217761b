"""Citations of the project's documents point at sections and rules that exist.

Code and documents cite ``docs/methods.md`` §N (or §N.M, lists and ranges such as
"§2, §3, §7", "§2–3", "§2–§5", "§3/§8") and ``docs/architecture.md`` rule N (or "rules 5–6"),
with or without backquotes around the file name and across a line break. Every cited number
must be a heading ``## §N. Title`` / ``### §N.M. Title`` of docs/methods.md or a rule heading
``### Rule N. Title`` of docs/architecture.md.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = REPO / "docs" / "methods.md"
ARCHITECTURE = REPO / "docs" / "architecture.md"

#: Where citations are looked for.
SCANNED = ("src", "tests", "benchmarks", "experiments", "docs")
#: Where the old, repository-external names must no longer appear.
NO_OLD_NAMES = ("src", "tests", "benchmarks")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".toml", ".cfg", ".ini", ".rst"}
SKIPPED_PARTS = {"__pycache__", ".venv", ".git", "results"}

SECTION_HEADING = re.compile(r"^#{2,4} §(\d+(?:\.\d+)*)\. \S", re.MULTILINE)
RULE_HEADING = re.compile(r"^#{2,4} Rule (\d+)\. \S", re.MULTILINE)

_SEC = r"§\s*\d+(?:\.\d+)*"
_SEC_RANGE = rf"{_SEC}(?:\s*[–-]\s*§?\s*\d+(?:\.\d+)*)?"
_SEP = r"\s*(?:,|/|and|or)\s*"
#: ``docs/methods.md`` §2, §3 and §7 — the file (any quoting), then one or more sections.
METHODS_CITATION = re.compile(
    rf"`{{0,2}}docs/methods\.md`{{0,2}}\s+((?:{_SEC_RANGE})(?:{_SEP}{_SEC_RANGE})*)"
)
_NUM_RANGE = r"\d+(?:\s*[–-]\s*\d+)?"
#: ``docs/architecture.md`` rule 4, rules 5–6, rules 5 and 6.
RULE_CITATION = re.compile(
    rf"`{{0,2}}docs/architecture\.md`{{0,2}}\s+rules?\s+((?:{_NUM_RANGE})(?:{_SEP}{_NUM_RANGE})*)"
)
#: The names of the documents before they moved into docs/ (bare, quoted, or "METHODS §4").
OLD_NAME = re.compile(r"(?<![\w/.])(?:METHODS|DESIGN)(?:\.md\b|(?=\s+(?:§|rules?\b)))")


def _files(roots) -> list[Path]:
    out = []
    for root in roots:
        for path in sorted((REPO / root).rglob("*")):
            rel = path.relative_to(REPO)
            if not path.is_file() or path.suffix not in SUFFIXES:
                continue
            if SKIPPED_PARTS & set(rel.parts) or any(p.endswith(".egg-info") for p in rel.parts):
                continue
            out.append(path)
    return out


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def method_sections(text: str | None = None) -> list[str]:
    """Section numbers of docs/methods.md headings, in order ("1", "1.1", …)."""
    text = METHODS.read_text() if text is None else text
    return SECTION_HEADING.findall(text)


def architecture_rules(text: str | None = None) -> list[int]:
    """Rule numbers of docs/architecture.md rule headings, in order."""
    text = ARCHITECTURE.read_text() if text is None else text
    return [int(n) for n in RULE_HEADING.findall(text)]


def _expand(part: str) -> list[str]:
    """'§2' → ['2']; '§2–3' or '§2–§5' → every top-level number in between; '§6.2–6.4' → ends."""
    nums = re.findall(r"\d+(?:\.\d+)*", part)
    if len(nums) == 2 and "." not in nums[0] + nums[1] and int(nums[0]) <= int(nums[1]):
        return [str(n) for n in range(int(nums[0]), int(nums[1]) + 1)]
    return nums


def cited_sections(text: str) -> list[tuple[int, str]]:
    """(line, section) for every section a text cites in docs/methods.md."""
    out = []
    for m in METHODS_CITATION.finditer(text):
        for part in re.split(_SEP, m.group(1)):
            out += [(_line(text, m.start()), s) for s in _expand(part)]
    return out


def cited_rules(text: str) -> list[tuple[int, int]]:
    """(line, rule) for every rule a text cites in docs/architecture.md."""
    out = []
    for m in RULE_CITATION.finditer(text):
        for part in re.split(_SEP, m.group(1)):
            out += [(_line(text, m.start()), int(n)) for n in _expand(part)]
    return out


def test_parser_finds_the_nine_sections_and_ten_rules():
    sections = method_sections()
    top = [s for s in sections if "." not in s]
    assert top == [str(n) for n in range(1, 10)], top
    assert len(sections) == len(set(sections)), "a section heading is repeated"
    for s in sections:
        assert s.split(".")[0] in top, f"§{s} has no parent section"
    assert architecture_rules() == list(range(1, 11))


def test_citation_parser_reads_every_form():
    text = (
        "a ``docs/methods.md`` §3, b docs/methods.md §2–3, c `docs/methods.md` §2–§5, §8,\n"
        "d ``docs/methods.md``\n   §6.2 and §7; e ``docs/methods.md`` §3/§8 f\n"
        "``docs/architecture.md`` rule\n10; ``docs/architecture.md`` rules 5–6; "
        "docs/architecture.md rules 1 and 4"
    )
    assert [s for _, s in cited_sections(text)] == [
        "3", "2", "3", "2", "3", "4", "5", "8", "6.2", "7", "3", "8"
    ]  # fmt: skip
    assert [r for _, r in cited_rules(text)] == [10, 5, 6, 1, 4]
    assert OLD_NAME.search("see ``METHODS.md`` §3") and OLD_NAME.search("(METHODS §4)")
    assert OLD_NAME.search("DESIGN.md rule 6") and OLD_NAME.search("(``DESIGN.md``)")
    assert not OLD_NAME.search("PROBE_METHODS = (a, b); docs/methods.md; design-notes.md")


def test_every_cited_section_and_rule_exists():
    sections, rules = set(method_sections()), set(architecture_rules())
    here = Path(__file__).resolve()
    bad = []
    for path in _files(SCANNED):
        if path.resolve() == here:  # its examples are not citations
            continue
        text = path.read_text(errors="replace")
        if path == METHODS:  # its own headings are definitions, not citations
            text = SECTION_HEADING.sub("", text)
        rel = path.relative_to(REPO)
        bad += [f"{rel}:{n}: §{s}" for n, s in cited_sections(text) if s not in sections]
        bad += [f"{rel}:{n}: rule {r}" for n, r in cited_rules(text) if r not in rules]
    assert not bad, "citations of missing sections or rules:\n" + "\n".join(bad)


def test_no_citation_of_the_documents_outside_the_repository():
    here = Path(__file__).resolve()
    bad = []
    for path in _files(NO_OLD_NAMES):
        if path.resolve() == here:
            continue
        text = path.read_text(errors="replace")
        for m in OLD_NAME.finditer(text):
            bad.append(f"{path.relative_to(REPO)}:{_line(text, m.start())}: {m.group(0)}")
    assert not bad, (
        f"{len(bad)} mentions of METHODS.md/DESIGN.md; cite docs/methods.md and "
        "docs/architecture.md instead:\n" + "\n".join(bad[:50])
    )
