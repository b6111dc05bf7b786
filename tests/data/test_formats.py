"""Row conversion to TRL's conversational preference format, and the problems it reports."""

import pytest

from trl_ext.data import RowProblem, parse_hh_transcript, to_conversational


def hh(*turns):
    return "".join(f"\n\n{speaker}: {text}" for speaker, text in turns)


def test_hh_transcript_turns_and_inline_speaker_words():
    text = hh(("Human", "Say 'Human: hi'"), ("Assistant", "Human: hi"), ("Human", "thanks"), ("Assistant", "ok"))
    assert parse_hh_transcript(text) == [
        {"role": "user", "content": "Say 'Human: hi'"},
        {"role": "assistant", "content": "Human: hi"},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "ok"},
    ]


def test_hh_consecutive_segments_of_one_speaker_are_one_turn():
    text = hh(("Human", "q"), ("Assistant", "part one"), ("Assistant", "part two"))
    assert parse_hh_transcript(text)[-1] == {"role": "assistant", "content": "part one\n\npart two"}


def test_hh_without_leading_blank_line_is_accepted():
    assert parse_hh_transcript("Human: q\n\nAssistant: a")[0] == {"role": "user", "content": "q"}


@pytest.mark.parametrize(
    "text, kind",
    [
        ("just some text", "bad_transcript"),
        (hh(("Human", "q"), ("Human", "still me")), "bad_transcript"),  # no "Assistant:" turn
        ("preamble" + hh(("Human", "q"), ("Assistant", "a")), "bad_transcript"),
        (hh(("Assistant", "a"), ("Human", "q"), ("Assistant", "b")), "bad_transcript"),
        (42, "not_string"),
    ],
)
def test_hh_bad_transcripts(text, kind):
    with pytest.raises(RowProblem) as err:
        parse_hh_transcript(text)
    assert err.value.kind == kind


def test_hh_pair_shares_prompt():
    row = {"chosen": hh(("Human", "q"), ("Assistant", "good")), "rejected": hh(("Human", "q"), ("Assistant", "bad"))}
    assert to_conversational(row) == {
        "prompt": [{"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }


def test_hh_pair_diverging_before_last_turn_is_reported():
    row = {
        "chosen": hh(("Human", "q"), ("Assistant", "x"), ("Human", "more"), ("Assistant", "good")),
        "rejected": hh(("Human", "q"), ("Assistant", "y"), ("Human", "more"), ("Assistant", "bad")),
    }
    with pytest.raises(RowProblem) as err:
        to_conversational(row)
    assert err.value.kind == "diverging_turns"


def test_hh_empty_final_turn_is_an_empty_response():
    row = {"chosen": hh(("Human", "q"), ("Assistant", " ")), "rejected": hh(("Human", "q"), ("Assistant", "bad"))}
    with pytest.raises(RowProblem, match="chosen response is empty") as err:
        to_conversational(row)
    assert err.value.kind == "empty_response"


def test_standard_row():
    out = to_conversational({"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert out["prompt"] == [{"role": "user", "content": "q"}]
    assert out["rejected"] == [{"role": "assistant", "content": "bad"}]


def test_conversational_implicit_prompt_is_extracted():
    shared = [{"role": "user", "content": "q"}]
    row = {
        "chosen": shared + [{"role": "assistant", "content": "good"}],
        "rejected": shared + [{"role": "assistant", "content": "bad"}],
    }
    assert to_conversational(row)["prompt"] == shared


@pytest.mark.parametrize(
    "row, kind",
    [
        ({"prompt": "q", "chosen": "good"}, "missing_field"),
        ({"question": "q", "good": "a", "bad": "b"}, "missing_field"),
        ({"prompt": "q", "chosen": "", "rejected": "bad"}, "empty_response"),
        ({"prompt": "  ", "chosen": "good", "rejected": "bad"}, "empty_prompt"),
        ({"prompt": "q", "chosen": 3, "rejected": "bad"}, "not_string"),
        ({"prompt": "q", "chosen": "same", "rejected": "same "}, "identical"),
        (
            {
                "prompt": [{"role": "user", "content": "q"}],
                "chosen": [{"role": "bot", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            },
            "bad_messages",
        ),
        (
            {
                "prompt": [{"role": "user", "content": "q"}],
                "chosen": [{"role": "assistant", "content": None}],
                "rejected": [{"role": "assistant", "content": "b"}],
            },
            "not_string",
        ),
        (["not", "a", "dict"], "not_object"),
    ],
)
def test_invalid_rows(row, kind):
    with pytest.raises(RowProblem) as err:
        to_conversational(row)
    assert err.value.kind == kind
