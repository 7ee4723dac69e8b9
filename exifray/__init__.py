"""exifray: does a photo's EXIF make an image classifier better, and at what energy cost?

`import exifray` is cheap: TensorFlow, Ray and aiohttp are imported only inside the functions that
need them (see DESIGN.md, "Heavy dependencies stay at the edges").
"""

from typing import TYPE_CHECKING

from exifray.version import __version__

# The Python API (`exifray.api`), one import away and still cheap to import: loaded on first use. No name here may
# be a submodule's (`exifray.sweep`, `exifray.predict`, ...): importing that submodule would replace the function on
# the package with the module.
API = ("synth", "ingest", "load_space", "run_sweep", "load_leaderboard", "best_trial", "export_best", "predict_photos")
__all__ = ["__version__", "best_trial", "export_best", "ingest", "load_leaderboard", "load_space", "predict_photos",
           "run_sweep", "synth"]

if TYPE_CHECKING:
    from exifray.api import (
        best_trial,
        export_best,
        ingest,
        load_leaderboard,
        load_space,
        predict_photos,
        run_sweep,
        synth,
    )


def __getattr__(name: str) -> object:
    if name in API:
        from exifray import api

        return getattr(api, name)
    raise AttributeError(f"module 'exifray' has no attribute {name!r}")
