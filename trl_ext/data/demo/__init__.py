"""The project's own demo preference pairs (helpful and harmless against rude, harmful or unhelpful), shipped so
the main job runs offline. Conversational TRL preference format, one JSON object per line."""

from pathlib import Path

DEMO_PATH = Path(__file__).with_name("preferences.jsonl")
