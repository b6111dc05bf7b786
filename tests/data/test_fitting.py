"""Pairs fitted to a trainer's max_length by dropping the earliest turns of the prompt, never the response."""

from datasets import Dataset

from trl_ext.data.fitting import fit_prompt, fit_turns, pair_length


def turn(role, text):
    return {"role": role, "content": text}


LONG = "word " * 60
PROMPT = [turn("system", "Be kind."), turn("user", LONG), turn("assistant", LONG), turn("user", "And now?")]
ROW = {"prompt": PROMPT, "chosen": [turn("assistant", "Fine.")], "rejected": [turn("assistant", "No idea at all.")]}


def test_the_earliest_exchange_goes_first_and_the_system_turn_stays(tiny_tokenizer):
    whole = pair_length(tiny_tokenizer, PROMPT, ROW["rejected"])
    last_only = pair_length(tiny_tokenizer, [PROMPT[0], PROMPT[3]], ROW["rejected"])
    assert fit_prompt(tiny_tokenizer, ROW, whole) == (PROMPT, "fits")
    prompt, outcome = fit_prompt(tiny_tokenizer, ROW, last_only)
    assert outcome == "shortened" and prompt == [PROMPT[0], PROMPT[3]]  # a user turn and its reply went together
    assert max(pair_length(tiny_tokenizer, prompt, r) for r in (ROW["chosen"], ROW["rejected"])) <= last_only
    prompt, outcome = fit_prompt(tiny_tokenizer, ROW, last_only - 1)  # even the last turn is too long
    assert outcome == "too_long" and prompt == [PROMPT[0], PROMPT[3]]


def test_a_dataset_is_fitted_and_counted(tiny_tokenizer):
    short = {**ROW, "prompt": [turn("user", "Hi")]}
    limit = pair_length(tiny_tokenizer, [PROMPT[0], PROMPT[3]], ROW["rejected"])
    fitted, counts = fit_turns(Dataset.from_list([ROW, short, ROW]), tiny_tokenizer, limit)
    assert counts == {"shortened": 2, "fits": 1}
    assert [len(p) for p in fitted["prompt"]] == [2, 1, 2]
    assert fitted["chosen"] == [ROW["chosen"], short["chosen"], ROW["chosen"]]  # responses are never touched
