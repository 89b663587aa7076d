"""Streaming, validating CSV reader for job input files.

Nothing is sent before every row has been read through here, so this is where a wrong column or
a typo stops. The file is streamed (memory does not grow with it): whole-file problems raise
``InputError`` before the first row; per-row problems are yielded as ``Problem`` so the caller
can list them all or, with --skip-invalid, journal them as rejected.

Decisions worth knowing:
- Header checks (column matching, a first line that is data) live in ``bulkops.input.header``.
- A structurally broken CSV (a quote never closed, text after a closing quote, a cell over
  64 KiB, a line over 1 MiB) raises ``InputError``: past that point we cannot tell where rows
  begin, and skipping would silently drop every row the runaway cell swallowed.
- A file with a header and no rows yields one warning (a cron export can be empty).
- Rows with more cells than the header are errors unless the surplus cells are empty (a
  comma inside an unquoted cell shifts every column after it); missing trailing cells are empty.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO, TypeAlias, cast

from bulkops.errors import InputError
from bulkops.input.header import (
    FROM, PHONE, PROFILE, REQUIRED_COLUMNS, SAVE_AS_UTF8, TO, check_header, expected_columns,
)
from bulkops.input.names import NeedProfiles, ProfileLookup
from bulkops.input.short_codes import (
    SHORT_CODE_TYPE, TYPE_COLUMN, WRITE_ONE, NeedShortCodes, ShortCodeLookup, short_code_ref,
)
from bulkops.input.phone import (
    is_profile_id, normalize_phone, normalize_profile_ref, normalize_region, quote_cell,
)
from bulkops.models import (
    UNASSIGNED, Extra, Kind, MigrateRow, NumberRow, Problem, Resource, Severity,
)

MAX_FIELD_CHARS = 64 * 1024  # no real cell comes near; a runaway quote hits it quickly
MAX_LINE_CHARS = 1024 * 1024  # bounds memory for a file with no line breaks

Row: TypeAlias = NumberRow | MigrateRow | Problem | NeedProfiles | NeedShortCodes
_PHONE_NUMBER, _SHORT_CODE = Resource.PHONE_NUMBER, Resource.SHORT_CODE

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file, read in chunks (the journal pins a job to its exact CSV)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as err:
        raise _open_error(path, err) from None


def read_rows(
    path: Path,
    kind: Kind,
    *,
    default_profile_id: str | None = None,
    default_region: str = "US",
    names: ProfileLookup | None = None,
    short_codes: ShortCodeLookup | None = None,
) -> Iterator[Row]:
    """Validated rows of ``path`` for a ``kind`` job, in file order, streamed.

    Raises InputError at once (before returning) for whole-file problems and for a bad
    default profile or region; raises InputError while iterating if the CSV structure breaks.
    Profile names are resolved through ``names``: the first name met before it holds the
    account's profiles is yielded as ``NeedProfiles`` (load them, then iterate on: the same
    row is read again). Without ``names``, names are kept as written. With ``short_codes``,
    a cell where a number goes that is no phone number but a short code's UUID, or its digits
    on a row typed ``short_code``, is a short code, resolved the same way
    (``NeedShortCodes``); without it, phone numbers only.
    """
    lookup = names or ProfileLookup(offline=True)
    if kind not in REQUIRED_COLUMNS:
        raise ValueError(f"{kind.value} jobs are not read from a CSV")
    try:
        region = normalize_region(default_region)
    except ValueError as err:
        raise InputError(f"default region: {err}") from None
    default: str | None = None
    if default_profile_id is not None:
        if kind is not Kind.ASSIGN:
            raise InputError(
                f"a default profile (--profile-id, or profile_id in the job file) only applies to "
                f"assign jobs, not {kind.value}; remove it"
            )
        try:
            default = normalize_profile_ref(default_profile_id)
            if not is_profile_id(default):
                default = lookup.resolve(default)  # the loader lists the profiles first
        except ValueError as err:
            raise InputError(f"--profile-id (or profile_id in the job file): {err}") from None
    rows = _Reader(path, kind, default, region, lookup, short_codes).rows()
    next(rows)  # runs up to the end of the header checks, so InputError raises here
    return cast(Iterator[Row], rows)


def _open_error(path: Path, err: OSError) -> InputError:
    """An OS error as an InputError that says what to do."""
    if isinstance(err, FileNotFoundError):
        return InputError(f"{path}: no such file; check the path")
    if isinstance(err, IsADirectoryError):
        return InputError(f"{path}: is a folder, not a CSV file; give the CSV file")
    if isinstance(err, PermissionError):
        return InputError(f"{path}: permission denied; make the file readable")
    return InputError(f"{path}: cannot be read ({err.strerror}); check the file")


def _open_text(path: Path) -> IO[str]:
    try:
        # surrogateescape: a bad byte becomes a lone surrogate we report with its line,
        # instead of a UnicodeDecodeError somewhere in the middle of a buffer.
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as err:
        raise _open_error(path, err) from None


def _bad_text(cells: list[str], joined: str) -> tuple[int, int, str] | None:
    """(column, line offset, what) of the first NUL or undecodable byte, else None."""
    if "\x00" not in joined:
        try:
            joined.encode("utf-8")  # fails only on the surrogates that stand for bad bytes
            return None  # ordinary non-ASCII text
        except UnicodeEncodeError:
            pass
    offset = 0
    for column, cell in enumerate(cells, 1):
        for pos, char in enumerate(cell):
            if char == "\x00":
                what = "a NUL byte"
            elif "\udc80" <= char <= "\udcff":
                what = f"the byte 0x{ord(char) - 0xDC00:02x}, which is not UTF-8"
            else:
                continue
            return column, offset + len(_LINE_BREAK.findall(cell, 0, pos)), what
        offset += len(_LINE_BREAK.findall(cell))
    return None


class _Reader:
    """One pass over one file; state shared by the header checks and the row loop."""

    def __init__(
        self, path: Path, kind: Kind, default: str | None, region: str, names: ProfileLookup,
        codes: ShortCodeLookup | None,
    ) -> None:
        self.path = path
        self.name = str(path)
        self.kind = kind
        self.default = default
        self.region = region
        self.line_num = 0  # physical lines handed to csv so far
        self.assign = kind in (Kind.ASSIGN, Kind.SET)  # rows that carry a target profile
        self.unassign_empty = kind is Kind.SET  # an empty profile cell means "unassigned"
        self.names = names
        self.codes = codes
        self.refs: dict[str, str] = {}  # profile cell -> id: a file repeats a few profiles
        self.index: dict[str, int] = {}  # required column name -> 0-based position
        self.phone_at = 0  # index[PHONE], read once per row
        self.profile_at: int | None = None
        self.headers: tuple[str, ...] = ()  # trimmed header names, for extras and messages
        self.extra_columns: tuple[tuple[int, str], ...] = ()  # (position, header) of the others
        self.sources: dict[str, tuple[int, str]] = {}  # migrate: source -> (line, target)
        self.targets: dict[str, int] = {}  # migrate: target -> line
        self.column_names: tuple[str, ...] = ()  # each column's report name: canonical if required

    def _lines(self, f: IO[str]) -> Iterator[str]:
        """Physical lines, each bounded, so one huge line cannot exhaust memory."""
        readline = f.readline
        while True:
            line = readline(MAX_LINE_CHARS + 1)
            if not line:
                return
            self.line_num += 1
            if len(line) > MAX_LINE_CHARS and line[-1] not in "\r\n":
                raise InputError(
                    f"{self.name}:{self.line_num}: the line is longer than "
                    f"{MAX_LINE_CHARS // (1024 * 1024)} MiB; this is not a CSV of numbers "
                    "(or it has no line breaks): export the CSV again"
                )
            yield line

    def _fail(self, line: int, message: str, column: int | None = None) -> InputError:
        return InputError(str(Problem(self.name, line, message, column=column)))

    def _csv_error(self, err: csv.Error, line: int) -> InputError:
        text = str(err)
        if "field limit" in text:
            what = (
                f"a cell is longer than {MAX_FIELD_CHARS // 1024} KiB, usually a quote (\") "
                "that is never closed; fix the quotes in this row"
            )
        elif "end of data" in text:
            what = 'a quoted cell starting in this row is never closed; add the closing quote (")'
        elif "expected after" in text:
            what = (
                'text follows a closing quote (") in this row; write a quote inside a quoted '
                'cell as two quotes ("") or remove it'
            )
        else:
            what = f"the CSV is malformed ({text}); export it again as CSV"
        return self._fail(line, what + "; nothing was sent")

    def rows(self) -> Iterator[Row | None]:
        """Header checks, a ``None`` once the header is accepted, then the rows."""
        csv.field_size_limit(MAX_FIELD_CHARS)
        with _open_text(self.path) as f:
            reader = csv.reader(self._lines(f), strict=True)
            width, header_end = self._read_header(reader)
            yield None  # header accepted: read_rows returns to its caller here
            if self.kind is Kind.UNASSIGN and PROFILE in self.index:
                yield self._problem(
                    header_end,
                    PROFILE,
                    "this column is ignored: an unassign job takes every listed number off "
                    "its profile; drop the column to silence this warning",
                    Severity.WARNING,
                )
            has_data = yield from self._body(reader, width, header_end)
        if not has_data:
            message = "has a header but no data rows; nothing to do"
            yield Problem(self.name, 0, message, severity=Severity.WARNING)

    def _read_header(self, reader: Iterator[list[str]]) -> tuple[int, int]:
        """(width, line) of the first non-blank record, once it passed the header checks."""
        end = 0
        try:
            for cells in reader:
                start, end = end + 1, self.line_num
                if any(c.strip() for c in cells):
                    header = check_header(
                        self.name, cells, start, self.kind, self.default, self.region
                    )
                    break
            else:
                message = "the file is empty; it needs a header line "
                raise self._fail(0, message + expected_columns(self.kind, self.default))
        except csv.Error as err:
            raise self._csv_error(err, end + 1) from None
        self.index = header.index
        self.headers = header.headers
        self.extra_columns = header.extra_columns
        self.phone_at = self.index.get(PHONE, 0)
        self.profile_at = self.index.get(PROFILE)
        self.type_at = next((i for i, h in self.extra_columns if h.strip().lower() == TYPE_COLUMN),
                            None)  # a ``type`` column: short_code marks a short code's row
        names = list(self.headers)
        for name, position in self.index.items():
            names[position] = name
        self.column_names = tuple(names)
        return header.width, start

    def _body(
        self, reader: Iterator[list[str]], width: int, end: int
    ) -> Generator[Row, None, bool]:
        """The data rows; returns whether there were any. Kept small: it runs a million times."""
        row: Callable[[list[str], int], Row | list[Row]]
        row = self._migrate if self.kind is Kind.MIGRATE else self._number_row
        has_data = False
        try:
            for cells in reader:
                start, end = end + 1, self.line_num  # a record may span lines (quoted breaks)
                if not cells:
                    continue
                joined = "".join(cells)
                if "\x00" in joined or not joined.isascii():
                    problem = self._text_problem(cells, joined, start, width)
                    if problem is not None:
                        has_data = True
                        yield problem
                        continue
                cells = [c.strip() for c in cells]
                if not any(cells):
                    continue  # a line of commas and spaces
                has_data = True
                if len(cells) != width:
                    problem = self._fit(cells, width, start)
                    if problem is not None:
                        yield problem
                        continue
                while True:
                    try:
                        result = row(cells, start)
                        break
                    except (NeedProfiles, NeedShortCodes) as need:
                        yield need  # the caller lists them; then this row again
                if isinstance(result, list):
                    yield from result
                else:
                    yield result
        except csv.Error as err:
            raise self._csv_error(err, end + 1) from None
        return has_data

    def _text_problem(
        self, cells: list[str], joined: str, start: int, width: int
    ) -> Problem | None:
        """An error for a NUL or a byte that is not UTF-8, on its own physical line."""
        bad = _bad_text(cells, joined)
        if bad is None:
            return None
        column, offset, what = bad
        return Problem(
            self.name,
            start + offset,
            f"the line holds {what}; {SAVE_AS_UTF8}",
            column=column,
            field=self.headers[column - 1] if column <= width else None,
            cells=self._cells(cells),
        )

    def _fit(self, cells: list[str], width: int, line: int) -> Problem | None:
        """Pad a short row, trim empty surplus cells; an error if the surplus holds text."""
        if len(cells) < width:
            cells.extend([""] * (width - len(cells)))
            return None
        if any(cells[width:]):
            return Problem(
                self.name,
                line,
                f"the row has {len(cells)} cells but the header has {width}; quote cells "
                "that contain commas, or add a header for the extra column",
                column=width + 1,
                cells=self._cells(cells),
            )
        del cells[width:]
        return None

    def _problem(
        self, line: int, name: str, message: str, severity: Severity = Severity.ERROR,
        cells: list[str] | None = None,
    ) -> Problem:
        column = self.index[name] + 1 if name in self.index else None
        return Problem(self.name, line, message, column=column, field=name, severity=severity,
                       cells=() if cells is None else self._cells(cells))

    def _cells(self, cells: list[str]) -> Extra:
        """A rejected row's cells as read, for its report line (surplus cells joined to the last)."""
        named = list(zip(self.column_names, cells))
        if len(cells) > len(self.column_names) and named:
            named[-1] = (named[-1][0], ",".join(cells[len(self.column_names) - 1:]))
        return tuple(named)

    def _extra(self, cells: list[str]) -> Extra:
        return tuple([(h, cells[i]) for i, h in self.extra_columns]) if self.extra_columns else ()

    def _number_row(self, cells: list[str], line: int) -> Row | list[Row]:
        """The hot path (a million calls): short, and allocating nothing but the row."""
        try:
            phone = normalize_phone(cells[self.phone_at], self.region)
            resource, ref = _PHONE_NUMBER, None
        except ValueError:  # not a number: a short code, if the cell names one
            code = self._short_code(cells)
            if code is None or self.codes is None:
                return self._row_errors(cells, line)
            try:
                phone, ref = self.codes.resolve(code)
            except ValueError:
                return self._row_errors(cells, line)
            resource = _SHORT_CODE
        if not self.assign:
            return NumberRow(line, phone, UNASSIGNED, self._extra(cells), resource, ref)
        cell = "" if self.profile_at is None else cells[self.profile_at]
        if cell:
            try:
                profile = self.refs.get(cell) or self._profile(cell)
            except ValueError:
                return self._row_errors(cells, line)
        elif self.unassign_empty:
            profile = UNASSIGNED
        elif self.default is not None:
            profile = self.default
        else:
            return self._row_errors(cells, line)
        return NumberRow(line, phone, profile, self._extra(cells), resource, ref)

    def _marked(self, cells: list[str]) -> bool:
        """Whether the row's ``type`` cell says it names a short code."""
        return self.type_at is not None and cells[self.type_at].strip().lower() == SHORT_CODE_TYPE

    def _short_code(self, cells: list[str]) -> str | None:
        """The short code the row's phone-number cell names (not a valid number), else None."""
        if self.codes is None:
            return None
        return short_code_ref(cells[self.phone_at], marked=self._marked(cells))

    def _profile(self, cell: str) -> str:
        """The profile id a cell names (a UUID, or a name resolved); ValueError if none."""
        known = self.refs.get(cell)
        if known is not None:
            return known
        ref = normalize_profile_ref(cell)
        profile = ref if is_profile_id(ref) else self.names.resolve(ref)
        if len(self.refs) < 1024:
            self.refs[cell] = profile
        return profile

    def _as_written(self, profile_id: str) -> str:
        """A profile as the file names it: its name, when a cell gave it by name."""
        written = next((cell.strip() for cell, ref in self.refs.items()
                        if ref == profile_id and cell.strip() != profile_id), None)
        return f"{written!r} ({profile_id})" if written else profile_id

    def _row_errors(self, cells: list[str], line: int) -> list[Row]:
        """Every error of a bad assign/unassign row (the phone and the profile cell)."""
        errors: list[Row] = []
        try:
            normalize_phone(cells[self.phone_at], self.region)
        except ValueError as err:
            code = self._short_code(cells)
            message = str(err)
            if code is not None and self.codes is not None:  # a short code: is it the account's?
                try:
                    self.codes.resolve(code)
                    message = ""
                except ValueError as refused:
                    message = str(refused)
            elif self.codes is not None and self._marked(cells):
                message = (f"{quote_cell(cells[self.phone_at])} is not a short code (the row's "
                           "type is short_code): write its 3 to 8 digits, or its UUID")
            elif self.codes is not None and cells[self.phone_at].strip().isdigit():
                message += f"; {WRITE_ONE}"  # digits alone are a phone number
            if message:
                errors.append(self._problem(line, PHONE, message, cells=cells))
        cell = "" if self.profile_at is None else cells[self.profile_at]
        if not self.assign:
            return errors
        if cell:
            try:
                self._profile(cell)
            except ValueError as err:
                errors.append(self._problem(line, PROFILE, str(err), cells=cells))
        elif self.default is None and not self.unassign_empty:
            message = (
                "the cell is empty and no default profile is set; write the profile's "
                "UUID or name, or give a default (--profile-id, or profile_id in the job file)"
            )
            errors.append(self._problem(line, PROFILE, message, cells=cells))
        return errors

    def _migrate(self, cells: list[str], line: int) -> list[Row]:
        """One migrate row, checked against the earlier ones (migrate files are small)."""
        problems: list[Row] = []
        ids: dict[str, str] = {}
        for name in (FROM, TO):
            try:
                ids[name] = self._profile(cells[self.index[name]])
            except ValueError as err:
                problems.append(self._problem(line, name, str(err), cells=cells))
        if problems:
            return problems
        source, target = ids[FROM], ids[TO]
        if source == target:
            message = "is the same as from_profile_id, so nothing would move; fix the target"
            return [self._problem(line, TO, message, cells=cells)]
        if source in self.sources:
            first, first_target = self.sources[source]
            if first_target == target:
                message = f"duplicates line {first}; this row is ignored"
                return [self._problem(line, FROM, message, Severity.WARNING)]
            message = (
                f"line {first} already moves {self._as_written(source)} to "
                f"{self._as_written(first_target)}; a profile can move to only one target: keep "
                f"line {first} or line {line}"
            )
            return [self._problem(line, FROM, message, cells=cells)]
        # A -> B then B -> C (or a swap) ends differently depending on the order of the moves.
        chained = self.targets.get(source) or self.sources.get(target, (0, ""))[0]
        if chained:
            message = (
                f"this row and line {chained} chain two moves (a profile is both a source and a "
                "target), so the result depends on their order; run them as separate jobs"
            )
            return [self._problem(line, FROM if source in self.targets else TO, message,
                                  cells=cells)]
        self.sources[source] = (line, target)
        self.targets[target] = line
        return [MigrateRow(line, source, target, self._extra(cells))]
