"""Which files an output of bulkops (a plan, a report, an export) may replace.

bulkops knows a file is its own by a sidecar beside it, ``.<name>.bulkops``, written when the
file was renamed into place: it records what the file is and the SHA-256 of exactly what
bulkops wrote. A file whose content no longer matches (edited since, or replaced by another
program) is no longer bulkops' own, and neither is a file with no sidecar.

An output path is refused before anything is written (``InputError``, exit 2, the file as it
was) when it is:
- a journal (any SQLite file) or one of a journal's own files (``-wal``, ``-shm``, ``.lock``),
  or an input of the job (its CSV, its job file, the key file): always, ``--force`` or not;
- any other file bulkops did not write: unless ``--force``.
A file bulkops wrote is replaced, and only once the new one is complete (``AtomicFile``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bulkops.errors import InputError

log = logging.getLogger("bulkops")

SIDECAR_SUFFIX = ".bulkops"
SQLITE_MAGIC = b"SQLite format 3\x00"
JOURNAL_SIDECARS = ("-wal", "-shm", "-journal", ".lock")

Inputs = Iterable[tuple[str, Path | str | None]]  # (what it is to the job, its path)


def sidecar_of(path: Path) -> Path:
    return path.with_name(f".{path.name}{SIDECAR_SUFFIX}")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def is_own(path: Path) -> bool:
    """Whether ``path`` holds exactly what bulkops last wrote there."""
    try:
        record = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
        return (isinstance(record, dict) and record.get("written_by") == "bulkops"
                and record.get("size") == path.stat().st_size
                and record.get("sha256") == _sha256(path))
    except (OSError, ValueError):
        return False


def record_own(path: Path, what: str) -> None:
    """Mark ``path`` (just renamed into place) as bulkops' own. A sidecar that cannot be
    written costs only a refusal (with --force as the way on) the next time."""
    side = sidecar_of(path)
    try:
        text = json.dumps({"written_by": "bulkops", "what": what, "size": path.stat().st_size,
                           "sha256": _sha256(path)})
        fd, tmp = tempfile.mkstemp(prefix=f"{side.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, side)
    except OSError as exc:
        log.warning("warning cannot record %s as written by bulkops (%s): the next %s there "
                    "will need --force", path, exc.strerror, what)


def _is_journal(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _journal_part(path: Path) -> Path | None:
    """The journal ``path`` belongs to, when it is a journal's -wal, -shm or .lock file."""
    for suffix in JOURNAL_SIDECARS:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            base = path.with_name(path.name[: -len(suffix)])
            if _is_journal(base):
                return base
    return None


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.absolute() == b.absolute()


def check_output(path: Path, what: str, option: str, *, inputs: Inputs = (),
                 force: bool = False, force_flag: str | None = "--force") -> None:
    """Refuse ``path`` as the output ``what`` (given by ``option``) unless bulkops may write
    it: see the module docstring. Nothing is written here. ``force_flag``: the flag that
    would let it replace a foreign file (None: the command has none)."""
    for role, given in inputs:
        if given is not None and _same(path, Path(given)):
            raise InputError(f"{path} is {role}; a {what} never replaces it, so nothing was "
                             f"written: choose another {option}")
    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise InputError(f"{path} is a folder; give {option} a file path")
    if _is_journal(path):
        raise InputError(f"{path} is a bulkops journal (a SQLite file); a {what} never "
                         f"replaces one, so nothing was written: choose another {option}")
    if (journal := _journal_part(path)) is not None:
        raise InputError(f"{path} belongs to the journal {journal}; a {what} never replaces "
                         f"it, so nothing was written: choose another {option}")
    if force or is_own(path):
        return
    way = f", or pass {force_flag} to replace it" if force_flag else ", or move the file away"
    raise InputError(f"{path} exists and bulkops did not write it (or it was changed since); "
                     f"nothing was written. Choose another {option}{way}")


def free_path(path: Path, what: str, inputs: Inputs = ()) -> Path:
    """``path`` if bulkops may write it there, else the first free ``<stem>-N<suffix>``
    beside it (said in the log): for outputs written at the end of a job, which must not
    fail then."""
    candidate, n = path, 1
    inputs = list(inputs)
    while True:
        try:
            check_output(candidate, what, "path", inputs=inputs)
            if candidate != path:
                log.warning("warning %s exists and bulkops did not write it: the %s is written "
                            "to %s instead", path, what, candidate)
            return candidate
        except InputError:
            n += 1
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
