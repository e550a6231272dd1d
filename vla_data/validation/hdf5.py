"""Validation rules for a recorder HDF5 episode file: the recorder contract (``schemas.recorder``) on its
datasets, links and attributes, and (deep) every frame decoded: damaged chunks, frozen cameras, the exact
content hash.

``check_hdf5`` never raises: whatever a file holds comes back as a ``FileReport`` with findings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py

from schemas import (
    ArrayHeader,
    FileReport,
    FindingCode,
    InstructionSource,
    RawEpisode,
    RecorderSettings,
    Scenario,
    ValidateOptions,
)
from schemas import Finding
from vla_data.sources.content_hash import fingerprint
from vla_data.sources.hdf5 import (
    FileLayout,
    decode_text,
    file_layout,
    first_chunk_bytes,
    header,
    iter_frame_tokens,
    open_episode,
    plain_attributes,
    read_actions,
)
from vla_data.sources.instructions import InstructionIndex, resolve_instruction

_finding = Finding.of


def check_hdf5(path: Path, settings: RecorderSettings, options: ValidateOptions, index: InstructionIndex
               ) -> list[FileReport]:
    """Validate a recorder file, its one episode: headers, attributes and small datasets; every frame with
    ``deep``. Never raises."""
    return [_check_file(path, settings, options, index)]


def _check_file(path: Path, settings: RecorderSettings, options: ValidateOptions, index: InstructionIndex
                ) -> FileReport:
    report = FileReport(path=str(path))
    scenario = Scenario.from_file_name(path.name)
    report.scenario = scenario.name if scenario else None
    try:
        if not h5py.is_hdf5(path):
            report.findings.append(
                _finding(
                    FindingCode.not_hdf5,
                    path,
                    None,
                    "not an HDF5 file (no HDF5 signature)",
                    "remove it from the dataset folder, or re-export it from the recorder",
                )
            )
            return report
        with open_episode(path) as f:
            _check_open_file(f, path, report, settings, options, index)
    except Exception as exc:  # a corrupt file can fail anywhere inside libhdf5; it is a finding, not a crash
        report.findings.append(
            _finding(
                FindingCode.corrupt_file,
                path,
                None,
                f"cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(),
                "the file is truncated or damaged (often a copy interrupted mid-way); copy it again from the robot",
            )
        )
    return report


def _check_open_file(
    f: h5py.File,
    path: Path,
    report: FileReport,
    settings: RecorderSettings,
    options: ValidateOptions,
    index: InstructionIndex,
) -> None:
    layout = file_layout(f)
    actions = read_actions(layout, settings.actions_key)
    in_file_instruction = _file_instruction(layout, settings.instruction_key)
    instruction, source = resolve_instruction([(in_file_instruction, InstructionSource.file)], path, index, settings)
    facts = {
        "path": str(path),
        "keys": sorted(layout.datasets),
        "external_links": layout.external_links,
        "external_storage": layout.external_storage,
        "virtual_datasets": layout.virtual_datasets,
        "cameras": {c.name: _header_if_present(layout, c.key) for c in settings.cameras},
        "actions": _header_if_present(layout, settings.actions_key),
        "action_values": actions,
        "instruction": instruction,
        "instruction_source": source,
        "attributes": plain_attributes(f),
    }
    report.instruction, report.instruction_source = instruction, source
    episode, errors = RawEpisode.findings_for(facts, settings)
    report.findings.extend(errors)
    if episode is None:
        return
    report.n_frames, report.frame_size = episode.n_frames, episode.frame_size
    report.frame_sizes = episode.frame_sizes
    values = episode.action_values
    if values is not None and values.size:
        report.action_min = values.min(axis=0).astype(float).tolist()
        report.action_max = values.max(axis=0).astype(float).tolist()
    report.findings.extend(episode.warnings(settings, options.window))
    headers = [episode.cameras[c.name] for c in settings.cameras]
    datasets = [layout.datasets[c.key] for c in settings.cameras]
    if any(h is None for h in headers):  # an external link, reported as such: nothing to hash
        return
    if options.deep:
        report.fingerprint = _deep_frames(datasets, headers, episode, path, report)  # type: ignore[arg-type]
    else:
        report.fingerprint = fingerprint(values, [(h, [first_chunk_bytes(ds)])  # type: ignore[misc]
                                                  for h, ds in zip(headers, datasets, strict=True)])


def _deep_frames(datasets: list[h5py.Dataset], headers: list[ArrayHeader], episode: RawEpisode, path: Path,
                 report: FileReport) -> str | None:
    """Decode every frame of every camera once: undecodable chunks, frozen cameras, and the fingerprint of
    every frame."""
    repeats: dict[str, list[int]] = {h.key: [] for h in headers}
    decoding = headers[0].key

    def tokens(ds: h5py.Dataset, key: str) -> Iterator[bytes]:
        nonlocal decoding
        decoding = key
        previous = None
        for i, token in enumerate(iter_frame_tokens(ds)):
            if token == previous:
                repeats[key].append(i)
            previous = token
            yield token

    try:
        digest = fingerprint(episode.action_values,
                             [(h, tokens(ds, h.key)) for h, ds in zip(headers, datasets, strict=True)])
    except OSError as exc:
        report.findings.append(
            _finding(
                FindingCode.corrupt_file,
                path,
                decoding,
                f"frame data cannot be decoded ({str(exc).splitlines()[0]})",
                "a compressed chunk is damaged; copy the file again from the robot or drop the episode",
            )
        )
        return None
    for key, frames in repeats.items():
        if frames:
            report.findings.append(
                _finding(
                    FindingCode.frozen_camera,
                    path,
                    key,
                    f"{len(frames)} frame(s) identical to the one before, first at frame {frames[0]}",
                    "the camera stream stalled while recording; check the camera driver, or drop the episode",
                )
            )
    return digest


def _header_if_present(layout: FileLayout, key: str):
    ds = layout.datasets.get(key)
    return header(ds, key) if ds is not None else None


def _file_instruction(layout: FileLayout, key: str) -> str | None:
    if not layout.is_local(key):
        return None
    ds = layout.datasets[key]
    if ds.dtype.kind not in "SUO" or ds.size > 16:
        return None
    return decode_text(ds[()])
