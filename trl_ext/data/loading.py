"""Read preference data from local files or the hub, validate every row, and split it deterministically.

Validation is a product feature: every problem is reported with its file and row before any training starts.
By default any problem is an error; with `on_invalid="skip"` the bad rows are skipped and counted.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import logging
import math
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from trl_ext.data.demo import DEMO_PATH
from trl_ext.data.formats import RowProblem, to_conversational, to_prompt
from trl_ext.exceptions import DataError

logger = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
MAX_LISTED_PROBLEMS = 20
MAX_ROW_CHARS = 1_000_000  # about 250k tokens: beyond any max_length, and a sign of a broken export


@dataclass
class DataReport:
    """What validation found: rows read, rows kept, problem counts by kind, and the first problems in full."""

    source: str
    rows: int = 0
    kept: int = 0
    problems: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, where: str, problem: RowProblem) -> None:
        self.problems[problem.kind] += 1
        if len(self.examples) < MAX_LISTED_PROBLEMS:
            self.examples.append(f"{where}: {problem}")

    def merge(self, other: DataReport) -> None:
        """Add another source's counts (an eval file's) to this report."""
        self.source = f"{self.source} + {other.source}"
        self.rows, self.kept = self.rows + other.rows, self.kept + other.kept
        self.problems.update(other.problems)
        self.examples = (self.examples + other.examples)[:MAX_LISTED_PROBLEMS]

    def summary(self) -> str:
        lines = [f"{self.source}: {self.rows} rows, {self.kept} usable, {sum(self.problems.values())} with problems"]
        lines += [f"  {kind}: {n}" for kind, n in self.problems.most_common()]
        lines += [f"  - {example}" for example in self.examples]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": dict(self.problems)}


def is_local(path: str) -> bool:
    """A path with a data-file suffix (optionally .gz) or an existing file is local; anything else is a hub id."""
    p = Path(path)
    return p.exists() or p.name.removesuffix(".gz").endswith(LOCAL_SUFFIXES)


def _open_text(path: Path):
    """Open a possibly gzipped file as UTF-8 text, with errors that name the file."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_rows(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield `(location, record)` for each record of a local file ("file:line N" or "file row N").

    A JSON line that does not parse is yielded as a `RowProblem` record, so it is counted like any other bad row;
    problems with the whole file (missing, empty, corrupt gzip, bad encoding) raise `DataError`.
    """
    path = Path(path)
    kind = path.name.removesuffix(".gz").rsplit(".", 1)[-1]
    try:
        if kind == "jsonl":
            with _open_text(path) as f:
                for number, line in enumerate(f, start=1):
                    if line.strip():
                        yield f"{path}:line {number}", _parse_json(line)
        elif kind == "json":
            with _open_text(path) as f:
                records = _parse_json(f.read())
            if isinstance(records, RowProblem):
                raise DataError(f"{path}: {records}")
            if not isinstance(records, list):
                raise DataError(f"{path}: expected a JSON list of objects (or .jsonl, one object per line)")
            for number, record in enumerate(records, start=1):
                yield f"{path} item {number}", record
        elif kind == "csv":
            with _open_text(path) as f:
                for number, record in enumerate(csv.DictReader(f), start=2):  # line 1 is the header
                    yield f"{path}:line {number}", record
        elif kind == "parquet":
            for number, record in enumerate(Dataset.from_parquet(str(path)), start=1):
                yield f"{path} row {number}", record
        else:
            raise DataError(f"{path}: unsupported file type; use one of {LOCAL_SUFFIXES} (optionally .gz)")
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: the gzip stream is truncated or corrupt ({err})") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 text at {_first_undecodable_line(path)} ({err.reason})") from err


def _first_undecodable_line(path: Path) -> str:
    """Where a file stops being UTF-8, as "line N" (read again in binary, on the error path only)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return f"line {number}, byte {err.start + 1} of the line"
    return "an unknown line"


def check_record(record: Any, max_row_chars: int = MAX_ROW_CHARS) -> None:
    """Problems any row can have whatever its format: non-finite numbers, and a size no training could use."""
    if not isinstance(record, dict):
        return
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RowProblem("non_finite", f"field {key!r} is {value}, not a finite number")
    size = len(json.dumps(record, default=str))
    if size > max_row_chars:
        raise RowProblem("huge_row", f"row is {size:,} characters, over the limit of {max_row_chars:,} (max_row_chars)")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        return RowProblem("bad_json", f"not valid JSON ({err.msg} at column {err.colno})")


def iter_records(
    path: str, split: str = "train", data_dir: str | None = None, revision: str | None = None
) -> Iterator[tuple[str, Any]]:
    """Yield `(location, record)` from a local file, `demo` (the shipped pairs), or else a hub dataset's split."""
    path = str(DEMO_PATH) if path == "demo" else path
    if is_local(path):
        yield from read_rows(path)
        return
    from datasets import load_dataset

    try:
        dataset = load_dataset(path, data_dir=data_dir, split=split, revision=revision)
    except Exception as err:  # hub errors come in many types; all mean "cannot get this dataset"
        raise DataError(
            f"Could not load hub dataset {path!r} (data_dir={data_dir!r}, split={split!r}): {err}. Offline? Use a "
            "local file: data.path=<file.jsonl|json|parquet|csv[.gz]>."
        ) from err
    for number, record in enumerate(dataset, start=1):
        yield f"{path}[{split}] row {number}", record


def convert_rows(
    records: Iterator[tuple[str, Any]],
    source: str,
    convert: Callable[[Any], dict],
    on_invalid: str = "error",
    max_row_chars: int = MAX_ROW_CHARS,
) -> tuple[list[dict[str, Any]], DataReport]:
    """Check (`check_record`) and convert every record with `convert`; fail listing every problem, or skip and
    count them."""
    if on_invalid not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    report, rows = DataReport(source), []
    for where, record in records:
        report.rows += 1
        try:
            if isinstance(record, RowProblem):
                raise record
            check_record(record, max_row_chars)
            rows.append(convert(record))
        except RowProblem as problem:
            report.add(where, problem)
    report.kept = len(rows)
    if report.rows == 0:
        raise DataError(f"{source}: no rows")
    if report.problems and on_invalid == "error":
        raise DataError(f"Invalid data (set data.on_invalid=skip to skip these rows):\n{report.summary()}")
    if report.problems:
        logger.warning("Skipped invalid rows:\n%s", report.summary())
    if not rows:
        raise DataError(f"{source}: no usable rows\n{report.summary()}")
    return rows, report


def convert_preferences(
    records: Iterator[tuple[str, Any]], source: str, fmt: str = "auto", on_invalid: str = "error"
) -> tuple[list[dict[str, Any]], DataReport]:
    """Every record as a conversational preference pair (see `to_conversational`)."""
    return convert_rows(records, source, lambda record: to_conversational(record, fmt), on_invalid)


def split_train_eval(pairs: list[dict[str, Any]], eval_size: float | int | str, seed: int) -> DatasetDict:
    """Deterministic split: `eval_size` is a fraction (< 1) or a row count, with at least one row on each side; or
    "all": every row for evaluation (a held-out file), in file order."""
    dataset = Dataset.from_list(pairs)
    if eval_size == "all":
        return DatasetDict(train=dataset.select([]), eval=dataset)
    if not isinstance(eval_size, (int, float)) or isinstance(eval_size, bool) or eval_size <= 0:
        raise DataError(f"data.eval_size: {eval_size!r} is neither a fraction, a row count nor 'all'")
    n_eval = round(eval_size * len(dataset)) if eval_size < 1 else int(eval_size)
    n_eval = min(max(n_eval, 1), len(dataset) - 1)
    if n_eval < 1:
        raise DataError(f"Need at least 2 usable rows to make a train/eval split, got {len(dataset)}")
    split = dataset.train_test_split(test_size=n_eval, seed=seed)
    return DatasetDict(train=split["train"], eval=split["test"])


def _load(
    convert: Callable[[Any, str], dict],
    path: str,
    format: str = "auto",
    split: str = "train",
    data_dir: str | None = None,
    revision: str | None = None,
    eval_size: float | int = 0.1,
    seed: int = 0,
    on_invalid: str = "error",
    max_rows: int | None = None,
    max_row_chars: int = MAX_ROW_CHARS,
    eval_path: str | None = None,
    eval_split: str = "test",
) -> tuple[DatasetDict, DataReport]:
    def read(source: str, hub_split: str, limit: int | None) -> tuple[list[dict[str, Any]], DataReport]:
        records = iter_records(source, split=hub_split, data_dir=data_dir, revision=revision)
        if limit:
            records = itertools.islice(records, limit)
        return convert_rows(records, source, lambda record: convert(record, format), on_invalid, max_row_chars)

    rows, report = read(path, split, max_rows)
    if not eval_path:
        return split_train_eval(rows, eval_size, seed), report
    eval_rows, eval_report = read(eval_path, eval_split, None)  # every row of a held-out source; eval_size unused
    report.merge(eval_report)
    return DatasetDict(train=Dataset.from_list(rows), eval=Dataset.from_list(eval_rows)), report


def load_preferences(path: str, **kwargs) -> tuple[DatasetDict, DataReport]:
    """Load preference data in any accepted format as a conversational train/eval `DatasetDict`, with its report.

    `path` is a local file, a hub dataset id, or `demo` (the pairs shipped with trl_ext). Keyword arguments:
    `format` (auto | standard | conversational | hh), `split`, `data_dir` and `revision` (hub), `eval_size` (fraction
    or rows, or "all"), `seed` (of the split), `on_invalid` (error | skip), `max_rows`, `max_row_chars` (a longer row
    is a problem), `eval_path` (a held-out source, local file or hub id, whose every row is the eval split: then every
    row of `path` trains and `eval_size` is unused) and `eval_split` (its split, when it is a hub dataset).
    """
    return _load(to_conversational, path, **kwargs)


def load_prompts(path: str, **kwargs) -> tuple[DatasetDict, DataReport]:
    """Prompts (`{"prompt": [messages]}`) from a prompt dataset or the prompt side of a preference dataset, for
    PPO, best-of-N and RLAIF; same arguments and same split as `load_preferences`."""
    return _load(to_prompt, path, **kwargs)


def chosen_as_completions(dataset: Dataset) -> Dataset:
    """Preference pairs as TRL prompt-completion rows (the chosen response), for SFT on the preferred answers."""
    return dataset.map(
        lambda row: {"prompt": row["prompt"], "completion": row["chosen"]},
        remove_columns=dataset.column_names,
        desc="chosen responses as SFT completions",
    )
