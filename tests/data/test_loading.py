"""Loading files of every supported type, clear errors naming file and row, skip-and-count, the check command."""

import gzip
import json
import re

import pytest

from tests.conftest import HH_FILE, needs_hh
from trl_ext.data import DEMO_PATH, DataError, load_preferences, load_prompts, parse_hh_transcript
from trl_ext.data.__main__ import main as check_main

GOOD = {"prompt": "How do I boil an egg?", "chosen": "Simmer it for 9 minutes.", "rejected": "Figure it out."}


def write_jsonl(path, rows, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return str(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".json", ".csv", ".parquet"])
def test_every_file_type_loads(tmp_path, suffix):
    rows = [{**GOOD, "prompt": f"{GOOD['prompt']} ({i})"} for i in range(10)]
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, rows)
    elif suffix == ".jsonl.gz":
        write_jsonl(path, rows, gzip.open)
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        from datasets import Dataset

        getattr(Dataset.from_list(rows), "to_csv" if suffix == ".csv" else "to_parquet")(str(path))
    data, report = load_preferences(str(path), eval_size=2)
    assert (len(data["train"]), len(data["eval"]), report.kept) == (8, 2, 10)
    assert data["train"][0]["chosen"][0]["role"] == "assistant"


def test_a_held_out_file_is_all_eval(tmp_path):
    data, report = load_preferences("demo", eval_size="all")
    assert len(data["train"]) == 0 and len(data["eval"]) == report.kept == 200
    assert data["eval"][0]["prompt"] == load_preferences("demo", eval_size="all")[0]["eval"][0]["prompt"]
    with pytest.raises(DataError, match="eval_size: 'most'"):
        load_preferences("demo", eval_size="most")


def test_an_eval_path_is_the_eval_split_and_every_row_of_path_trains(tmp_path):
    rows = [{**GOOD, "prompt": f"question {i}"} for i in range(8)]
    train, held_out = write_jsonl(tmp_path / "train.jsonl", rows[:5]), write_jsonl(tmp_path / "val.jsonl", rows[5:])
    data, report = load_preferences(train, eval_path=held_out, max_rows=4, eval_size=0.5)  # eval_size unused
    prompts = lambda split: [row["prompt"][0]["content"] for row in data[split]]  # noqa: E731
    assert prompts("train") == [f"question {i}" for i in range(4)]  # max_rows limits the training source only
    assert prompts("eval") == [f"question {i}" for i in range(5, 8)]  # whole, in file order
    assert (report.rows, report.kept) == (7, 7) and "val.jsonl" in report.source


def test_a_bad_row_of_the_eval_path_is_named_or_skipped_and_counted(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [GOOD, GOOD])
    held_out = write_jsonl(tmp_path / "val.jsonl", [GOOD, {**GOOD, "chosen": ""}])
    with pytest.raises(DataError, match=r"val\.jsonl:line 2"):
        load_preferences(train, eval_path=held_out)
    data, report = load_preferences(train, eval_path=held_out, on_invalid="skip")
    assert (len(data["train"]), len(data["eval"]), report.rows, report.kept) == (2, 1, 4, 3)
    assert sum(report.problems.values()) == 1


def test_split_is_deterministic_and_seeded(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{**GOOD, "prompt": str(i)} for i in range(50)])
    first = load_preferences(path, eval_size=0.2, seed=1)[0]["eval"]["prompt"]
    assert first == load_preferences(path, eval_size=0.2, seed=1)[0]["eval"]["prompt"]
    assert first != load_preferences(path, eval_size=0.2, seed=2)[0]["eval"]["prompt"]


def test_bad_rows_are_all_reported_with_file_and_line(tmp_path):
    rows = [
        GOOD,
        {"question": "q", "good": "a", "bad": "b"},  # wrong keys
        {**GOOD, "chosen": ""},  # empty response
        "{not json",
        {"chosen": "\n\nHuman: hi there", "rejected": "\n\nHuman: hi there\n\nAssistant: ok"},  # no Assistant turn
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_preferences(path)
    message = str(err.value)
    for line, text in [
        (2, "missing field"),
        (3, "chosen response is empty"),
        (4, "not valid JSON"),
        (5, 'does not end with an "Assistant:" turn'),
    ]:
        assert f"bad.jsonl:line {line}: " in message and text in message
    assert "data.on_invalid=skip" in message


def test_skip_mode_counts_problems(tmp_path):
    rows = [{**GOOD, "prompt": str(i)} for i in range(5)] + [{**GOOD, "chosen": ""}, {**GOOD, "rejected": None}]
    data, report = load_preferences(write_jsonl(tmp_path / "p.jsonl", rows), on_invalid="skip", eval_size=1)
    assert (report.rows, report.kept) == (7, 5)
    assert dict(report.problems) == {"empty_response": 1, "missing_field": 1}
    assert report.to_dict()["problems"] == {"empty_response": 1, "missing_field": 1}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(gzip.compress(b'{"prompt": "q"}\n' * 500)[:60]), "gzip stream is truncated"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.write_bytes('{"prompt": "caf\u00e9"}\n'.encode("latin-1")), "not valid UTF-8"),
    ],
)
def test_broken_files_name_the_file(tmp_path, make, message):
    path = tmp_path / ("broken.jsonl.gz" if "gzip" in message else "broken.jsonl")
    make(path)
    with pytest.raises(DataError, match=message) as err:
        load_preferences(str(path))
    assert str(path) in str(err.value)


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_preferences(str(tmp_path / "nope.jsonl"))
    (tmp_path / "pairs.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported file type"):
        load_preferences(str(tmp_path / "pairs.txt"))


def test_offline_hub_dataset_error_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(DataError, match="Could not load hub dataset 'Anthropic/hh-rlhf'.*local file"):
        load_preferences("Anthropic/hh-rlhf", data_dir="harmless-base")


def test_demo_data_is_clean_and_large_enough():
    data, report = load_preferences("demo", eval_size=0.15)
    assert report.rows >= 150 and not report.problems
    assert len(data["eval"]) == round(0.15 * report.rows)


def test_prompts_from_prompt_rows_and_preference_rows(tmp_path):
    rows = [
        {"prompt": "plain text"},
        {"prompt": [{"role": "user", "content": "as messages"}]},
        GOOD,
        {"prompt": [{"role": "assistant", "content": "no user turn"}]},
        {"question": "wrong key"},
    ]
    data, report = load_prompts(write_jsonl(tmp_path / "p.jsonl", rows), on_invalid="skip", eval_size=1)
    prompts = sorted(p[0]["content"] for p in list(data["train"]["prompt"]) + list(data["eval"]["prompt"]))
    assert prompts == ["How do I boil an egg?", "as messages", "plain text"]
    assert dict(report.problems) == {"bad_messages": 1, "missing_field": 1}
    # an empty response does not spoil the prompt of a preference row
    data, report = load_prompts(write_jsonl(tmp_path / "q.jsonl", [{**GOOD, "chosen": ""}, GOOD]), eval_size=1)
    assert report.kept == 2


def test_check_command(tmp_path, capsys):
    assert check_main(["check", str(DEMO_PATH)]) == 0
    assert "0 with problems" in capsys.readouterr().out
    path = write_jsonl(tmp_path / "p.jsonl", [GOOD, {**GOOD, "chosen": ""}])
    assert check_main(["check", path]) == 1
    out = capsys.readouterr().out
    assert "2 rows, 1 usable" in out and "empty_response: 1" in out and "p.jsonl:line 2" in out
    assert check_main(["check", str(tmp_path / "missing.jsonl")]) == 2


@needs_hh
def test_shared_hh_file_parses_completely():
    """All 1,734 transcripts parse into alternating turns that hold exactly the transcript's text."""
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 1734
    for row in rows:
        for key in ("chosen", "rejected"):
            messages = parse_hh_transcript(row[key])
            roles = [m["role"] for m in messages]
            assert roles == ["user", "assistant"] * (len(roles) // 2)
            speakers = re.findall(r"\n\n(Human|Assistant):", row[key])
            assert len(messages) == 1 + sum(a != b for a, b in zip(speakers, speakers[1:]))
            text_only = re.sub(r"\n\n(Human|Assistant):", "", row[key])
            assert "".join("".join(m["content"] for m in messages).split()) == "".join(text_only.split())
    data, report = load_preferences(str(HH_FILE), format="hh", on_invalid="skip", eval_size=0.1)
    assert (report.rows, report.kept, dict(report.problems)) == (1734, 1731, {"empty_response": 3})
    assert len(data["train"]) + len(data["eval"]) == 1731
