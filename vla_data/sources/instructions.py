"""Where an episode's instruction comes from: the source's own (a file's dataset, a bag's topic or metadata),
a ``dataset_index.csv`` beside it, the settings, or a template over the target side its name gives."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from schemas import InstructionSource, RecorderSettings, Scenario


class IndexCsvError(ValueError):
    """A dataset_index.csv that cannot be used."""


class InstructionIndex:
    """Instructions from ``dataset_index.csv`` files (columns ``episode_path``, ``instruction``).

    A CSV applies to the episodes in its folder and below. ``episode_path`` may be absolute, relative to
    the CSV's folder, or a bare file name. Built once in the parent process and handed to workers.
    """

    def __init__(self) -> None:
        self.by_path: dict[str, str] = {}
        self.by_name: dict[tuple[str, str], str] = {}  # (csv folder, file name) -> instruction

    @classmethod
    def for_files(cls, files: Iterable[Path], csv_name: str) -> InstructionIndex:
        index = cls()
        seen: set[Path] = set()
        for file in files:
            for folder in file.resolve().parents:
                if folder in seen:
                    continue
                seen.add(folder)
                csv = folder / csv_name
                if csv.is_file():
                    index._load(csv)
        return index

    def _load(self, csv: Path) -> None:
        try:
            table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except Exception as exc:  # pandas raises many kinds for a malformed CSV
            raise IndexCsvError(f"{csv}: cannot be read as CSV ({exc})") from exc
        missing = {"episode_path", "instruction"} - set(table.columns)
        if missing:
            raise IndexCsvError(
                f"{csv}: missing column(s) {', '.join(sorted(missing))}; expected episode_path, instruction"
            )
        for episode_path, instruction in zip(table["episode_path"], table["instruction"], strict=True):
            if not instruction.strip():
                continue
            p = Path(episode_path)
            self.by_path[str((csv.parent / p).resolve())] = instruction.strip()
            self.by_name[(str(csv.parent), p.name)] = instruction.strip()

    def lookup(self, path: Path) -> str | None:
        resolved = path.resolve()
        if str(resolved) in self.by_path:
            return self.by_path[str(resolved)]
        for folder in resolved.parents:
            hit = self.by_name.get((str(folder), resolved.name))
            if hit:
                return hit
        return None


def resolve_instruction(
    own: list[tuple[str | None, InstructionSource]], path: Path, index: InstructionIndex, settings: RecorderSettings,
    also: Path | None = None,
) -> tuple[str | None, InstructionSource | None]:
    """The episode's instruction and where it came from: the source's own (``own``, in order: an HDF5 file's
    dataset; a bag's topic, then its metadata), then the CSV (a row for ``path``, else for ``also``: the bag
    of an episode BAG#k), then the settings' instruction, then the template over the target side the file
    (or bag) name gives."""
    for text, source in own:
        if text:
            return text, source
    from_csv = index.lookup(path) or (index.lookup(also) if also is not None else None)
    if from_csv:
        return from_csv, InstructionSource.csv
    if settings.instruction:
        return settings.instruction, InstructionSource.setting
    scenario = Scenario.from_file_name((also or path).name)
    if scenario is not None and scenario.target_side is not None:
        return settings.instruction_template.format(side=scenario.target_side), InstructionSource.file_name
    return None, None


