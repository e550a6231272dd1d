"""What an edit of a store's episodes is asked to do: `vla-data remove`, `relabel`, `resplit` (each a new version
that copies no frame), and which episodes it takes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.store import Split


class EpisodeSelection(BaseModel):
    """Episodes of the store's current version: by id, source name or path, or content hash (a prefix of 8 or
    more), and/or a query on the episode table (pandas ``DataFrame.query``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    episodes: tuple[str, ...] = Field((), description="Episode ids, source names or paths, or content hashes.")
    where: str | None = Field(None, description="A query on the episode table, e.g. \"scenario == '1box_hori_left'\".")

    @model_validator(mode="after")
    def _something(self) -> EpisodeSelection:
        if not self.episodes and self.where is None:
            raise ValueError("name the episodes, or give a query on the episode table")
        return self


def _one_or_each(one: object, each: dict, what: str, table: str) -> None:
    """Exactly one of: a value for every selected episode, or one per episode."""
    if (one is None) == (not each):
        raise ValueError(f"give one {what} for the episodes, or {table}")


class Relabel(BaseModel):
    """New instructions: one for every selected episode, or one per episode (from a CSV: episode, instruction)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str | None = None
    per_episode: dict[str, str] = Field(default_factory=dict, description="Episode (as selected) -> instruction.")

    @model_validator(mode="after")
    def _one_source(self) -> Relabel:
        _one_or_each(self.instruction, self.per_episode, "instruction", "a CSV of episode,instruction rows")
        texts = [self.instruction] if self.instruction is not None else list(self.per_episode.values())
        if any(not t.strip() for t in texts):
            raise ValueError("an instruction is empty: the policy would learn from no words")
        return self


class Resplit(BaseModel):
    """The split the selected episodes move to, or one split per episode (a split file: episode, split)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: Split | None = None
    per_episode: dict[str, Split] = Field(default_factory=dict, description="Episode (as selected) -> split.")

    @model_validator(mode="after")
    def _one_source(self) -> Resplit:
        _one_or_each(self.to, self.per_episode, "split", "a split file of episode,split rows")
        return self
