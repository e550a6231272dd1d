"""Building a store from recorder episodes: one zarr store with splits and train-only stats.

``build_store`` is what `vla-data build-splits` runs (``pipelines.build_splits`` reports it), and what tests and
benchmarks call to make a store.

The output is checked first (``vla_data.ownership``: it must not overlap a source folder, and only a
vla-data store or nothing may be there) and the sources validated; a source with errors stops the build
before anything is written (unless ``skip_invalid``). Then, holding the store's writer lock
(``vla_data.store_writer.writing``), the store decides and writes its next version
(``vla_data.store_plan.build_version``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from schemas import RecorderSettings, ValidateOptions, ValidationReport
from schemas.store import BuildOptions, StoreManifest
from vla_data.ownership import check_output
from vla_data.recorder import common_root, episode_files
from vla_data.location import StoreLocation
from vla_data.store import StoreError
from vla_data.store_plan import build_version
from vla_data.store_writer import BuildProgress, writing
from vla_data.validation import validate


class BuildRefused(Exception):
    """The sources have errors (and --skip-invalid was not given): nothing was written."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(f"{report.n_errors} source file(s) have errors")
        self.report = report


def build_store(
    sources: list[Path],
    out: Path | str,
    options: BuildOptions,
    settings: RecorderSettings,
    progress: BuildProgress | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> StoreManifest:
    """Build (or extend) the store at ``out`` from ``sources``; see the module doc. Raises ``BuildRefused``,
    ``StoreError``, ``OwnershipError`` or ``StoreBusy`` with a message for the user; ``on_wait`` hears that
    the build waits for another one writing the same store."""
    if not StoreLocation.of(out).is_local:
        raise StoreError(f"{out}: stores are written to a local folder (reading works from a URL too); build it "
                         "on a local disk, then copy the folder")
    sources = [s.resolve() for s in sources]
    out = Path(out).resolve()
    check_output(out, sources)  # before validating: a wrong output is refused at once, nothing written
    files = episode_files(sources)
    root = Path(common_root(sources))
    report = validate(files, settings, ValidateOptions(), root=str(root))
    if report.n_errors and not options.skip_invalid:
        raise BuildRefused(report)  # before the lock: a refused build writes nothing at all
    with writing(out, sources, options.wait, on_wait):
        return build_version(report, root, out, options, settings, progress)
