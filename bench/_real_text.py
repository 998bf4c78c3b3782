"""Real human-written text for the retrieval bench, built from what is installed.

No PyPI package found ships ~50 MB of plain prose (corpus packages download their data
at run time, which this machine cannot), so the corpus is the documentation that
installed software carries: first the docstrings (module, class, function) of every .py
file and the .rst / .md / .txt files and package METADATA (READMEs) in the
interpreter's standard library and site-packages (~24k chunks here), in the system's
Python packages and in the Google Cloud SDK's library, then the English manual pages in
/usr/share/man (troff requests and escapes stripped), then the READMEs, NEWS and text
files in /usr/share/doc. Written by people,
for people, about many topics (HTTP, numerics, parsing, shells, networking, file
formats...), each under its own project's licence (PSF for the standard library; BSD,
MIT, Apache-2.0, GPL and others), read here only to measure, never stored or shipped.

Paragraphs are kept if they read as prose (mostly letters, at least 12 words, no
doctest or indented code), deduplicated by their normalised text (the same licence or
boilerplate paragraph in many packages counts once), and packed in file order into
chunks of 350-700 characters. The order is fixed by sorted paths, so a corpus is the
same on the same installed packages.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import re
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

MIN_CHARS = 350
MAX_CHARS = 700
_SPACE = re.compile(r"\s+")
_RULE = re.compile(r"\s*[-=~^*#]{3,}\s*")
_WORD = re.compile(r"[A-Za-z][a-z]+")
SYSTEM_PYTHON = (Path("/usr/lib/python3/dist-packages"), Path("/usr/lib/google-cloud-sdk/lib"))
DOC = Path("/usr/share/doc")
MAN = Path("/usr/share/man")  # English pages only: the language folders are not read
_FONT_REQUESTS = {".B", ".I", ".R", ".BR", ".RB", ".IR", ".RI", ".BI", ".IB", ".SM"}
_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\\(.."), " "),
    (re.compile(r"\\s[+-]?\d"), ""),
    (re.compile(r"\\[,/&|^%]"), ""),
    (re.compile(r"\\[-e]"), "-"),
    (re.compile(r"\\(.)"), r"\1"),
]
_DOC_NAMES = (".rst", ".md", ".txt")
_SKIP_NAMES = ("license", "licence", "copying", "notice", "authors", "record", "top_level")


def sources() -> list[Path]:
    """Python trees read for docstrings and documents: this interpreter's standard
    library and site-packages first, then the system's Python packages and the Google
    Cloud SDK's library where the machine has them."""
    paths = sysconfig.get_paths()
    own = sorted({Path(paths["stdlib"]), Path(paths["purelib"]), Path(paths["platlib"])})
    return own + [path for path in SYSTEM_PYTHON if path.is_dir()]


def chunks(limit: int) -> list[str]:
    """Up to `limit` distinct chunks of prose; fewer if the installed text runs out."""
    seen: set[bytes] = set()
    out: list[str] = []
    for texts in _texts():
        pending = ""
        for paragraph in _paragraphs(texts):
            key = hashlib.blake2b(paragraph.lower().encode(), digest_size=12).digest()
            if key in seen:
                continue
            seen.add(key)
            if len(paragraph) > MAX_CHARS:
                paragraph = _cut(paragraph)
            if pending and len(pending) + 1 + len(paragraph) > MAX_CHARS:
                if len(pending) >= MIN_CHARS:
                    out.append(pending)
                pending = ""
            pending = f"{pending} {paragraph}".strip()
            if len(pending) >= MIN_CHARS:
                out.append(pending)
                pending = ""
            if len(out) >= limit:
                return out
    return out


def _texts() -> Iterator[list[str]]:
    """The texts of one file at a time: its docstrings, or the whole document."""
    yield from _python_docs()
    yield from _man_pages()
    yield from _package_docs()


def _python_docs() -> Iterator[list[str]]:
    for root in sources():
        for path in sorted(root.rglob("*")):
            name = path.name.lower()
            if any(name.startswith(skip) for skip in _SKIP_NAMES) or "test" in path.parts[-2]:
                continue
            try:
                if name.endswith(".py"):
                    yield _docstrings(path.read_text(encoding="utf-8"))
                elif name.endswith(_DOC_NAMES) or name == "metadata":
                    yield [path.read_text(encoding="utf-8")]
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
                continue


def _man_pages() -> Iterator[list[str]]:
    for path in sorted(MAN.glob("man[1-8]/*.gz")):
        try:
            yield [_man_text(gzip.decompress(path.read_bytes()).decode("utf-8"))]
        except (OSError, UnicodeDecodeError, EOFError):
            continue


def _package_docs() -> Iterator[list[str]]:
    """READMEs, NEWS and plain-text manuals of the system's packages (not their
    changelogs or copyright files)."""
    for path in sorted(DOC.rglob("*")):
        name = path.name.lower().removesuffix(".gz")
        if not (name.startswith(("readme", "news")) or name.endswith(_DOC_NAMES)):
            continue
        try:
            data = path.read_bytes()
            yield [(gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")]
        except (OSError, UnicodeDecodeError, EOFError):
            continue


def _man_text(troff: str) -> str:
    """A man page's prose: font requests inlined, other requests as paragraph breaks,
    escapes removed."""
    lines = []
    for line in troff.splitlines():
        if line.startswith((".", "'")):
            request, _, rest = line.partition(" ")
            if request in _FONT_REQUESTS and rest:
                lines.append(rest.replace('"', ""))
            else:
                lines.append("")
        else:
            lines.append(line)
    text = "\n".join(lines)
    for pattern, replacement in _ESCAPES:
        text = pattern.sub(replacement, text)
    return text


def _docstrings(source: str) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and (
            doc := ast.get_docstring(node)
        ):
            found.append(doc)
    return found


def _paragraphs(texts: list[str]) -> Iterator[str]:
    for text in texts:
        for block in text.split("\n\n"):
            # Section underlines (numpydoc, reST) go; code, doctests, comments, tables and
            # field lists are not prose.
            lines = [line for line in block.splitlines() if not _RULE.fullmatch(line)]
            if not lines or any(
                line.startswith(("    ", "\t", ">>>", "...", "|", "+-", ":param", "$ ", "#"))
                for line in lines
            ):
                continue
            paragraph = _SPACE.sub(" ", " ".join(lines)).strip()
            words = _WORD.findall(paragraph)
            if len(words) < 12 or sum(map(len, words)) < 0.6 * len(paragraph):
                continue
            yield paragraph


def _cut(paragraph: str) -> str:
    """A long paragraph's first sentences, up to MAX_CHARS."""
    cut = paragraph.rfind(". ", 0, MAX_CHARS)
    return paragraph[: cut + 1] if cut >= MIN_CHARS else paragraph[:MAX_CHARS]
