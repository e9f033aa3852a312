"""Offline corpus: docstrings of the installed Python's standard library (the default data) or site-packages.

Modules are parsed, never imported. The standard library's docstrings are a pure function of the Python
version, so the default data, its cache and a resume do not change when packages are installed; the
identity used in fingerprints is the documents' content, not file paths or times. `site-packages` is
offered too, but it changes with every `pip install`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import sys
import sysconfig
import warnings
from pathlib import Path

from ..errors import DataError
from .written import write_whole

_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "idlelib", "lib2to3", "test", "tests"}


def root_for(which: str) -> list[Path]:
    """The directories scanned for 'stdlib' or 'site-packages'."""
    paths = sysconfig.get_paths()
    if which == "stdlib":
        return [Path(paths["stdlib"])]
    if which == "site-packages":
        roots = {Path(paths["purelib"]), Path(paths["platlib"])}
        return sorted(r for r in roots if r.is_dir())
    raise DataError(f"python_docs path must be 'stdlib' or 'site-packages', not {which!r}")


def python_files(which: str) -> list[Path]:
    """All .py files under the roots, sorted so the corpus order is the same on every run."""
    out: list[Path] = []
    for root in root_for(which):
        for dirpath, dirnames, filenames in os.walk(root):
            # stdlib's root contains site-packages; skip it (and tests) so the two sources don't overlap
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")] if which == "stdlib" \
                else [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
            out.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(out)


def file_docstrings(path: Path) -> str:
    """All docstrings of one module (module, classes, functions) joined by blank lines; '' if none."""
    try:
        source = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError, OSError, RecursionError):
        return ""
    parts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc.split()) >= 3:
                parts.append(doc.strip())
    return "\n\n".join(parts)


def documents(which: str, max_documents: int | None = None, cache_root: Path | None = None) -> list[str]:
    """One document per module with docstrings, in sorted path order, at most max_documents.

    Parsing thousands of modules takes seconds, and every rank of every run needs the same list;
    with `cache_root` the result is kept there as JSON keyed by the files' identity.
    """
    if cache_root is None:
        return _parse_documents(which, max_documents)
    key = hashlib.sha256(json.dumps(_files_key(which, max_documents), sort_keys=True).encode()).hexdigest()[:20]
    cached = Path(cache_root) / "python_docs" / f"{which}-{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    docs = _parse_documents(which, max_documents)
    write_whole(cached, json.dumps(docs))  # ranks may race; each renames a whole file
    return docs


def _parse_documents(which: str, max_documents: int | None) -> list[str]:
    docs: list[str] = []
    for path in python_files(which):
        text = file_docstrings(path)
        if text.strip():
            docs.append(text)
            if max_documents is not None and len(docs) >= max_documents:
                break
    if not docs:
        raise DataError(f"python_docs {which!r}: found no docstrings under {', '.join(map(str, root_for(which)))}")
    return docs


def _files_key(which: str, max_documents: int | None) -> dict:
    """A cheap key for the parsed documents' cache file: the Python, the roots and every file's size and time."""
    h = hashlib.sha256()
    for p in python_files(which):
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"python": sys.version, "roots": [str(r) for r in root_for(which)], "files": h.hexdigest(),
            "max_documents": max_documents}


def identity(which: str, max_documents: int | None, docs: list[str]) -> dict:
    """What the corpus is, for fingerprints: which docstrings, the Python version, and the documents' sha256."""
    digest = hashlib.sha256("\0".join(docs).encode("utf-8")).hexdigest()
    return {"python_docs": which, "python": platform.python_version(), "max_documents": max_documents,
            "documents_sha256": digest}


def describe(which: str) -> str:
    """One line saying what the corpus is made of."""
    if which == "stdlib":
        return (f"docstrings of the Python {platform.python_version()} standard library "
                f"({platform.python_implementation()}), one document per module")
    return "docstrings of the installed site-packages (changes with every pip install), one document per module"
