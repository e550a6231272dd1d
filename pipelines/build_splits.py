"""The build-splits job: build (or extend) the store through ``vla_data.build.job``, with a progress bar, and
say what the build did: the store as `vla-data info` describes it, then what was left out or replaced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from pipelines.info import render_info
from schemas import RecorderSettings
from schemas.store import BuildOptions
from vla_data.build.job import build_store
from vla_data.common.refusal import Refusal
from vla_data.store.location import StoreLocation
from vla_data.store.reader import open_store


class BuildBar:
    """A tqdm bar in frames per second (every camera's frames), with episodes done (and per second) beside it."""

    def __enter__(self) -> BuildBar:
        self.bar = tqdm(desc="build-splits", unit="frame", disable=None)
        self.episodes, self.total_episodes = 0, 0
        return self

    def start(self, frames: int, episodes: int) -> None:
        self.bar.reset(total=frames)
        self.total_episodes = episodes

    def advance(self, frames: int, episodes: int) -> None:
        self.episodes += episodes
        elapsed = max(self.bar.format_dict["elapsed"], 1e-9)
        self.bar.set_postfix_str(f"episodes {self.episodes}/{self.total_episodes}, {self.episodes / elapsed:.1f} episodes/s",
                                 refresh=False)
        self.bar.update(frames)

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def run_build(sources: list[Path], out: Path | str, options: BuildOptions, settings: RecorderSettings,
              on_wait: Callable[[Refusal], None]) -> str:
    """Build the store with a progress bar; the report for the user. Raises what ``build_store`` raises."""
    with BuildBar() as bar:
        built = build_store(sources, out, options, settings, progress=bar, on_wait=on_wait)
    opened = open_store(out if StoreLocation.of(out).url else Path(out).resolve())
    manifest, last = built.manifest, built.entry
    lines = [render_info(opened)]
    lines += [f"left out (same content as {d.same_as}): {d.source_path}" for d in last.duplicates]
    lines += [f"replaced in {r.split.value} (content changed {r.old_hash[:12]} -> {r.new_hash[:12]}): {r.source_path}"
              for r in last.replaced]
    for c in last.instructions_changed:
        lines.append(f"{'relabelled' if c.applied else 'instruction differs from the stored one (kept; --update-instructions takes it)'}: "
                     f"{c.source_path}: {c.stored!r} -> {c.now!r}")
    if last.left_out_removed:
        gone = last.left_out_removed
        lines.append(f"{len(gone)} source(s) left out: `vla-data remove` removed their episode ({', '.join(gone[:3])}"
                     + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
                     + "); `vla-data restore` of a version holding them brings them back")
    if last.sources_gone:
        gone = last.sources_gone
        lines.append(f"{len(gone)} stored episode(s) kept whose source is gone: {', '.join(gone[:3])}"
                     + (f" and {len(gone) - 3} more" if len(gone) > 3 else ""))
    if last.recognised:
        lines.append(f"{last.recognised} stored source file(s) recognised unchanged (size, mtime, quick hash): not read again")
    if built.unchanged:
        lines.append(f"nothing new: every source is stored as it is, so no version was written ({opened.location} "
                     f"stays at {opened.version}; {manifest.n_episodes} episodes, {manifest.n_frames} frames)")
    else:
        lines.append(f"wrote {opened.location} version {opened.version} ({manifest.n_episodes} episodes, "
                     f"{manifest.n_frames} frames; {len(last.added)} added, {last.kept} kept, "
                     f"{len(last.duplicates)} duplicates left out)")
    return "\n".join(lines)
