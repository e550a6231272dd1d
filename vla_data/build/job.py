"""Building a store from recorder episodes: one zarr store with splits and train-only stats.

``build_store`` is what `vla-data build-splits` runs (``pipelines.build_splits`` reports it), and what tests and
benchmarks call to make a store.

The output is checked first (``vla_data.store.ownership``: it must not overlap a source folder, and only a
vla-data store or nothing may be there) and the sources validated (but those the store holds with an unchanged
stamp, ``vla_data.build.sources.recognised``); a source with errors stops the build
before anything is written (unless ``skip_invalid``). Then, holding the store's writer lock
(``vla_data.store.writer.writing``), the store decides and writes its next version
(``vla_data.build.plan.build_version``). ``out`` is a local folder or a URL (``vla_data.store.location``); the sources
are local paths (on a Dask cluster: paths every worker sees, such as a shared mount).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from schemas import RecorderSettings, ValidateOptions, ValidationReport
from schemas.store import BuildOptions
from vla_data.store.ownership import Ownership, check_output, ownership
from vla_data.common.pools import SchedulerError, check_scheduler
from vla_data.common.refusal import Refusal
from vla_data.sources.formats import common_root, find_sources
from vla_data.store.location import LocationError, StoreLocation, storage_errors
from vla_data.store.reader import StoreError
from vla_data.build.plan import Built, build_version
from vla_data.build.sources import recognised
from vla_data.store.writer import BuildProgress, writing
from vla_data.validation.checks import validate


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
    on_wait: Callable[[Refusal], None] | None = None,
) -> Built:
    """Build (or extend) the store at ``out`` from ``sources``; see the module doc (a build with nothing new
    writes nothing: ``Built.unchanged``). Raises ``BuildRefused``,
    ``StoreError``, ``OwnershipError`` or ``StoreBusy`` with a message for the user; ``on_wait`` hears that
    the build waits for another one writing the same store."""
    sources = [s.resolve() for s in sources]
    store = StoreLocation.of(out)
    if store.path is not None:
        store = StoreLocation(path=store.path.resolve())
    try:
        with storage_errors(store, "writing the store"):
            check_output(store, sources)  # before validating: a wrong output is refused at once, nothing written
            _refuse_stores(sources)
            check_scheduler(options.scheduler)  # and so is a scheduler that does not answer
            files = find_sources(sources)
            root = Path(common_root(sources))
            known, stamps, rest = recognised(store, files, settings, options.overwrite)  # stored, unchanged: not read
            report = validate(rest, settings, ValidateOptions(), root=str(root))
            if report.n_errors and not options.skip_invalid:
                raise BuildRefused(report)  # before the lock: a refused build writes nothing at all
            report.files += known
            with writing(store, sources, options.wait, on_wait):
                return build_version(report, root, store, options, settings, progress, stamps)
    except LocationError as exc:
        raise StoreError(str(exc)) from exc
    except SchedulerError as exc:
        raise StoreError(exc.message, *exc.fixes) from exc  # its fixes too, for the CLI to word as flags


def _refuse_stores(sources: list[Path]) -> None:
    """A store given as a source holds no recordings: say so, and how stores are combined."""
    stores = [s for s in sources if s.is_dir() and ownership(s) in (Ownership.store, Ownership.incomplete)]
    if stores:
        raise StoreError(f"{', '.join(map(str, stores))}: a vla-data store, not recorded episodes; build-splits reads "
                         "recordings (HDF5 files, ROS 2 bags). Combine stores with `vla-data merge A.zarr B.zarr -o "
                         "C.zarr`, or add recordings to a store with `vla-data build-splits SRC -o STORE`")
