"""A constitution: the written principles an AI judge compares responses by (Bai et al. 2022, "Constitutional AI",
https://arxiv.org/abs/2212.08073).

Files, YAML or JSON:
    {name: ..., principles: [{id: harmless, text: "Choose the response that ...", weight: 2.0}, ...]}
    [{id, text, weight}, ...]                          (the list alone)
    ["Please choose the response that ... Options:", ...]   (Anthropic's published format; ids p1, p2, ...)
A trailing "Options:" (the CAI prompts put the options after it) is dropped; our judge prompt places the options.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from trl_ext.exceptions import ConfigError

PRINCIPLE_KEYS = {"id", "text", "weight"}


class ConstitutionError(ConfigError):
    """A constitution file or node that cannot be used, with the file and the principle named."""


@dataclass(frozen=True)
class Principle:
    """One principle: an id (for metadata), the instruction the judge reads, a sampling weight (> 0)."""

    id: str
    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class Constitution:
    """An ordered, non-empty set of principles with unique ids."""

    principles: tuple[Principle, ...]
    name: str = "constitution"

    def __post_init__(self):
        if not self.principles:
            raise ConstitutionError(f"{self.name}: a constitution needs at least one principle")
        ids = [p.id for p in self.principles]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ConstitutionError(f"{self.name}: duplicate principle ids {duplicated}")

    def __len__(self) -> int:
        return len(self.principles)

    @classmethod
    def load(cls, path: str | Path) -> Constitution:
        """Read a `.yaml`/`.yml`/`.json` file; errors name the file and the principle."""
        path = Path(path)
        if not path.is_file():
            raise ConstitutionError(f"{path}: constitution file not found")
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ConstitutionError(f"{path}: constitution file is empty")
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise ConstitutionError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {err}") from err
        return cls.from_data(data, source=str(path), name=path.stem)

    @classmethod
    def from_data(cls, data: Any, source: str = "constitution", name: str | None = None) -> Constitution:
        """Build from parsed YAML/JSON: a mapping with `principles` (and optional `name`), or the list alone."""
        if isinstance(data, dict):
            unknown = sorted(set(data) - {"name", "description", "principles", "path"})
            if unknown:
                raise ConstitutionError(f"{source}: unknown key(s) {unknown}; expected name, description, principles")
            name, data = data.get("name") or name, data.get("principles")
        if not isinstance(data, list) or not data:
            raise ConstitutionError(
                f"{source}: expected a non-empty list of principles (strings, or {{id, text, weight}} objects), "
                f"got {type(data).__name__ if data is not None else 'nothing'}"
            )
        return cls(tuple(_principle(item, i, source) for i, item in enumerate(data, start=1)), name or source)

    @classmethod
    def from_config(cls, node: Any) -> Constitution:
        """From a Hydra `constitution` node (or a dict): `path` to a file, or the principles inline."""
        node = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        if node.get("path"):
            loaded = cls.load(node["path"])
            return cls(loaded.principles, node.get("name") or loaded.name)
        return cls.from_data(node, source=f"constitution {node.get('name', '')}".strip())

    def sample(self, key: str, k: int = 1) -> list[Principle]:
        """`k` distinct principles drawn with probability proportional to weight, reproducibly from `key`.

        Weighted sampling without replacement by Efraimidis-Spirakis keys u^(1/w); k >= len(self) gives them all.
        """
        if k >= len(self.principles):
            return list(self.principles)
        rng = random.Random(key)
        keyed = sorted(self.principles, key=lambda p: rng.random() ** (1.0 / p.weight), reverse=True)
        return keyed[:k]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "principles": [asdict(p) for p in self.principles]}


def _clean(text: str) -> str:
    text = text.strip()
    return text.removesuffix("Options:").strip() if text.endswith("Options:") else text


def _principle(item: Any, number: int, source: str) -> Principle:
    where = f"{source}: principle {number}"
    if isinstance(item, str):
        item = {"id": f"p{number}", "text": item}
    if not isinstance(item, dict):
        raise ConstitutionError(f"{where}: expected a string or an {{id, text, weight}} object, got {item!r:.60}")
    unknown = sorted(set(item) - PRINCIPLE_KEYS)
    if unknown:
        raise ConstitutionError(f"{where}: unknown key(s) {unknown}; expected {sorted(PRINCIPLE_KEYS)}")
    text = item.get("text")
    if not isinstance(text, str) or not _clean(text):
        raise ConstitutionError(f"{where}: `text` must be a non-empty string, got {text!r:.60}")
    weight = item.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        raise ConstitutionError(f"{where}: `weight` must be a positive number, got {weight!r}")
    return Principle(str(item.get("id") or f"p{number}"), _clean(text), float(weight))
