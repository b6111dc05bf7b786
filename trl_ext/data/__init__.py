"""Preference data: load (local files, hub, HH-RLHF transcripts), convert to TRL's conversational format, validate."""

from trl_ext.data.demo import DEMO_PATH
from trl_ext.data.formats import RowProblem, parse_hh_transcript, to_conversational
from trl_ext.data.loading import (
    DataError,
    DataReport,
    chosen_as_completions,
    iter_records,
    load_preferences,
    load_prompts,
)

__all__ = [
    "DEMO_PATH",
    "DataError",
    "DataReport",
    "RowProblem",
    "chosen_as_completions",
    "iter_records",
    "load_preferences",
    "load_prompts",
    "parse_hh_transcript",
    "to_conversational",
]
