"""`vla-data view`: episodes of a store (a path or URL), a folder of recorder episodes, one HDF5 episode or a ROS 2
bag, logged into a Rerun recording (``pipelines.rerun_recording``) with, given a run, what the policy predicted.

A store's episodes show its stored frames (what the model sees) and actions; a raw source's are validated
first (the findings go into the episode's info), then each camera is shown as recorded (its colour order
applied) and as the model sees it (resized as a build would, with the run's preprocessing when given). With a
run, the chunks are ``Policy.episode_chunks`` of the frames the model sees, as ``vla-data eval`` scores them.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from pipelines.eval_results import EpisodeResult, first_action_mae, worst_episodes
from pipelines.ports import busy_port, viewer_ports
from pipelines.predict import episode_cameras, policy_channels, read_recorded
from pipelines.rerun_recording import EpisodeView, entity_key, episode_layout, log_episode
from schemas import ColorOrder, RecorderSettings, ValidateOptions, default_action_names
from schemas.findings import Severity
from schemas.store import Preprocessing
from schemas.validation import FileReport
from schemas.view import ViewOptions
from vla_data.store.location import StoreLocation
from vla_data.store.history import parse_address
from vla_data.store.ownership import Ownership, ownership_of
from vla_data.common.files import atomic_path
from vla_data.sources.formats import find_sources, source_exists
from vla_data.common.resize import resize_frames
from vla_data.store.reader import DatasetStore, open_store
from vla_data.validation.checks import validate
from vla_model.loading import check_store
from vla_model.runtime import Policy


T = TypeVar("T")


class ViewError(ValueError):
    """A source, an episode or a run that cannot be shown; the message says which and what to do."""


@dataclass(frozen=True)
class Source:
    """What SOURCE is: a store, or recorder episodes (files and bags)."""

    store: DatasetStore | None = None
    episodes: tuple[Path, ...] = ()


def resolve_source(source: str) -> Source:
    """A URL or a folder holding a vla-data store is a store; an HDF5 file, a bag or a folder of them are
    episodes; anything else is a ``ViewError``."""
    location = StoreLocation.of(parse_address(source).location)  # STORE@VERSION: the store
    if location.url is not None or ownership_of(location) in (Ownership.store, Ownership.incomplete):
        return Source(store=open_store(source))  # an incomplete or unreadable store is refused here, saying why
    path = Path(source)
    if not source_exists(path):
        raise ViewError(f"{source} does not exist: give a store, a folder of episodes, an HDF5 episode or a bag")
    files = find_sources([path])
    if not files:
        raise ViewError(f"{source} is neither a vla-data store nor a recorder episode, and holds no HDF5 episode or "
                        "ROS 2 bag")
    return Source(episodes=tuple(files))


def _episode_name(path: str) -> str:
    """A raw episode's name: the file name without .h5, a bag's folder name (BAG#k for a cut bag's k-th)."""
    name = Path(path).name
    return Path(name).stem if Path(name).suffix in (".h5", ".hdf5") else name


def _matches(asked: str, names: list[str]) -> bool:
    return asked in names or any(asked == Path(n).stem for n in names)


def _select(candidates: list[tuple[list[str], object]], options: ViewOptions, what: str) -> list[object]:
    """The candidates ``options.episodes`` names (each by any of its names; every name must match one), else
    the first ``max_episodes``."""
    if not options.episodes:
        return [c for _, c in candidates[: options.max_episodes]]
    chosen, unknown = [], []
    for asked in options.episodes:
        hits = [c for names, c in candidates if _matches(asked, names)]
        chosen += [c for c in hits if c not in chosen]
        if not hits:
            unknown.append(asked)
    if unknown:
        known = ", ".join(names[0] for names, _ in candidates[:6])
        raise ViewError(f"{what} has no episode {', '.join(unknown)} (it has {len(candidates)}: {known}"
                        f"{', ...' if len(candidates) > 6 else ''})")
    return chosen


def store_views(store: DatasetStore, options: ViewOptions, policy: Policy | None) -> Iterator[EpisodeView]:
    """The chosen episodes of a store (chosen and checked now, read as iterated): its frames, actions,
    instruction and metadata; with ``policy`` its chunks."""
    if policy is not None:
        check_store(policy.meta, store.manifest)  # a CheckpointError naming every setting that differs
    table = store.episodes
    if options.split is not None:
        table = table[table["split"] == options.split.value]
        if table.empty:
            raise ViewError(f"{store.location}: split {options.split.value} has no episodes")
    rows = table.to_dict("records")
    candidates = [([str(r["episode"]), Path(str(r["source_path"])).name], r) for r in rows]
    return _store_episodes(store, _select(candidates, options, str(store.location)), policy)


def _store_episodes(store: DatasetStore, rows: list[dict], policy: Policy | None) -> Iterator[EpisodeView]:
    names = list(store.manifest.actions.names)
    for row in rows:
        episode = int(row["episode"])
        a, b = store.episode_range(episode)
        frames = {c: np.asarray(store.camera(c)[a:b]) for c in store.manifest.camera_names}
        view = EpisodeView(
            key=entity_key(f"e{episode}"),
            info={"store": str(store.location), "episode": str(episode), "source": str(row["source_path"]),
                  "scenario": str(row["scenario"]), "split": str(row["split"]), "frames": str(b - a),
                  "cameras": ", ".join(c.describe() for c in store.manifest.cameras)},
            model_frames=frames, actions=np.asarray(store.action[a:b], np.float32), action_names=names,
            instruction=str(row["instruction"]), instruction_source=str(row["instruction_source"]))
        if policy is not None:
            _predict(view, policy)
        yield view


def raw_views(files: tuple[Path, ...], settings: RecorderSettings, options: ViewOptions, policy: Policy | None,
              warn: Callable[[str], None] | None = None) -> Iterator[EpisodeView]:
    """The chosen recorder episodes (validated and chosen now, read as iterated), as recorded and as the model
    sees them, their findings in their info. An episode with errors cannot be shown: named, it is refused;
    otherwise it is left out of the first ``max_episodes`` and ``warn`` hears which."""
    if policy is not None:
        settings = episode_cameras(settings, policy)
    root = Path(files[0]).parent if len(files) == 1 else Path(".")
    report = validate(list(files), settings, ValidateOptions(), root=str(root))
    broken = {r.path: "; ".join(f"{f.code.value}: {f.message}" for f in r.findings if f.severity == Severity.error)
              for r in report.files if not r.ok}
    shown = report.files if options.episodes else [r for r in report.files if r.ok]
    if broken and not options.episodes and warn:
        warn(f"left out {len(broken)} episode(s) with errors ({', '.join(list(broken)[:3])}"
             f"{', ...' if len(broken) > 3 else ''}); `vla-data validate` says how to fix them")
    chosen = _select([([Path(r.path).name, r.path], r) for r in shown], options, ", ".join(str(f) for f in files[:3]))
    for r in chosen:
        if r.path in broken:
            raise ViewError(f"{r.path}: cannot be shown ({broken[r.path]}); `vla-data validate {r.path}` says how to "
                            "fix it")
    if not chosen:
        raise ViewError(f"{', '.join(str(f) for f in files[:3])}: no episode without errors to show")
    return _raw_episodes(chosen, settings, policy)


def _raw_episodes(chosen: list[FileReport], settings: RecorderSettings, policy: Policy | None) -> Iterator[EpisodeView]:
    pre = policy.preprocessing if policy is not None else Preprocessing()
    for r in chosen:
        read = read_recorded(Path(r.path), settings)
        recorded, actions, names = read.rgb_frames(), read.actions, default_action_names(read.actions.shape[1])
        if policy is not None:
            actions, names = policy_channels(actions, policy, r.path), list(policy.action_names)
        view = EpisodeView(
            key=entity_key(_episode_name(r.path)),
            info={"source": r.path, "kind": r.kind.value, "scenario": str(r.scenario), "frames": str(len(actions)),
                  "cameras": ", ".join(c.describe() for c in settings.cameras),
                  "model view": f"{pre.image_size}x{pre.image_size}, {pre.resize.value}"},
            model_frames={c: resize_frames(f, pre, ColorOrder.rgb) for c, f in recorded.items()},
            actions=actions, action_names=names, instruction=r.instruction,
            instruction_source=r.instruction_source.value if r.instruction_source else "none",
            findings=[f"{f.severity.value} {f.code.value}: {f.message}" for f in r.findings],
            recorded_frames=recorded, stamps_ns=read.stamps)
        if policy is not None:
            _predict(view, policy)
        yield view


def _predict(view: EpisodeView, policy: Policy) -> None:
    """The chunk the policy predicts at every frame, from the frames the model sees."""
    missing = [c for c in policy.camera_names if c not in view.model_frames]
    if missing:
        raise ViewError(f"{view.info.get('source', view.key)}: the run reads camera(s) {', '.join(missing)}, the "
                        f"episode has {', '.join(view.model_frames)}")
    if not view.instruction:
        raise ViewError(f"{view.info.get('source', view.key)}: no instruction to predict with")
    view.chunks = policy.episode_chunks({c: view.model_frames[c] for c in policy.camera_names}, view.instruction)
    view.action_offset = policy.spec.action_offset


# -- where the recording goes --------------------------------------------------------------------------------
GRPC_PORT, WEB_PORT = 9876, 9090
SERVER_MEMORY = "2GiB"  # the served recording is kept in memory up to this (the oldest data goes first)


def has_display() -> bool:
    """Whether a native viewer window can open here (a desktop session on Linux, always on macOS/Windows)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@dataclass
class Sink:
    """Where ``record`` sends the recording: a file (written beside it, renamed into place when complete), the
    web viewer on 127.0.0.1, or a native viewer it spawns."""

    save: Path | None = None
    serve: bool = False
    web_port: int = WEB_PORT
    grpc_port: int = GRPC_PORT
    stream: rr.RecordingStream | None = field(default=None, repr=False)  # a served recording lives while it does

    def viewer_url(self) -> str:
        grpc = f"rerun+http://127.0.0.1:{self.grpc_port}/proxy"
        return f"http://127.0.0.1:{self.web_port}/?url={urllib.parse.quote(grpc, safe='')}"


def record(sink: Sink, name: str, fill: Callable[[rr.RecordingStream], T]) -> T:
    """One recording sent to ``sink``, filled by ``fill`` (whose result is returned). A file is complete or
    absent: written as a temporary beside it and renamed when its last byte is written."""
    if sink.save is None and not sink.serve and not has_display():
        raise ViewError("no display here for the native viewer: pass --save FILE.rrd (open it with `rerun FILE.rrd` "
                        "where there is a display) or --serve (the web viewer, on 127.0.0.1)")
    if sink.serve:
        busy = busy_port(viewer_ports(sink.web_port, sink.grpc_port))
        if busy:
            raise ViewError(busy)
    rec = rr.RecordingStream("vla-data", recording_id=f"view-{name}")
    rec.set_log_time_enabled(False)  # the frame (and the recorder's time) are the timelines; when it ran is not
    if sink.save is not None and not sink.save.parent.is_dir():
        raise ViewError(f"{sink.save}: the folder {sink.save.parent} does not exist; create it first")
    with ExitStack() as stack:  # a file: renamed into place (atomic_path) once disconnecting wrote its footer
        try:
            temporary = None if sink.save is None else stack.enter_context(atomic_path(sink.save))
            if temporary is not None:
                rec.save(temporary)
                stack.callback(rec.disconnect)
            elif sink.serve:
                rec.set_sinks(rr.GrpcServerSink("127.0.0.1", port=sink.grpc_port, server_memory_limit=SERVER_MEMORY))
            else:
                rec.spawn()
        except (RuntimeError, OSError) as exc:  # Rerun's sinks report their failures so; an unwritable folder
            raise ViewError(f"Rerun could not start the recording ({exc}); check that the folder is writable") from exc
        try:
            result = fill(rec)
            rec.flush()
        except RuntimeError as exc:  # Rerun's sinks report their failures so
            raise ViewError(f"Rerun could not take the recording: {exc}") from exc
    if sink.serve:
        sink.stream = rec  # its gRPC server holds the recording for the viewer until the sink goes
        rr.serve_web_viewer(web_port=sink.web_port, open_browser=False,
                            connect_to=f"rerun+http://127.0.0.1:{sink.grpc_port}/proxy")
    return result


def episodes_into(views: Iterable[EpisodeView], options: ViewOptions, progress: Callable[[int], None] | None = None
                  ) -> Callable[[rr.RecordingStream], tuple[int, int]]:
    """A ``record`` filling: every episode of ``views``; it returns the (episodes, frames) logged."""

    def fill(rec: rr.RecordingStream) -> tuple[int, int]:
        layouts, frames = [], 0
        for view in views:
            frames += log_episode(rec, view, options)
            layouts.append(episode_layout(view))
            if progress:
                progress(1)
        if layouts:  # one tab per episode, in the order shown
            rec.send_blueprint(rrb.Blueprint(rrb.Tabs(*layouts), collapse_panels=False))
        return len(layouts), frames

    return fill


def record_worst(results: list[EpisodeResult], store: DatasetStore, policy: Policy, path: Path, n: int,
                 options: ViewOptions = ViewOptions()) -> tuple[int, int]:
    """`eval --rrd`: the ``n`` scored episodes of highest first-action MAE, worst first, with the policy's
    predictions, saved to ``path``; (episodes, frames) logged."""
    worst = worst_episodes(results, n)
    chosen = options.model_copy(update={"episodes": [str(r.episode) for r in worst], "split": None})

    def views() -> Iterator[EpisodeView]:
        for view, result in zip(store_views(store, chosen, policy), worst, strict=True):
            view.info["first-action MAE"] = f"{first_action_mae(result):.4f} (rank {worst.index(result) + 1} of {n})"
            yield view

    return record(Sink(save=path), f"eval-{path.stem}", episodes_into(views(), chosen))
