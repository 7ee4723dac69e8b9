"""Where an EXPERIMENT DIR is and the names of the files in it: `ExperimentFiles` (a local path or any pyarrow
URI such as s3://...), `storage_uri`, and the file and folder names exifray keeps beside Tune's results. This is
the one module that knows these names and where local paths end and URIs begin; `experiment.py` reads an
experiment back, and the layout is described there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from exifray import schema
from exifray.errors import ConfigError
from exifray.fsutil import atomic_write_bytes, filesystem_and_path, is_uri

if TYPE_CHECKING:
    import pyarrow.fs as pafs

SWEEP_FILE: Final = "sweep.yaml"
JOURNAL_FILE: Final = "optuna.journal"
LEADERBOARD_FILE: Final = "leaderboard.csv"
ERROR_MARKER: Final = "exifray_error.txt"
CODECARBON_DIR: Final = "codecarbon"  # in a trial's folder: CodeCarbon's files of the running attempt
DEFAULT_STORAGE: Final = "experiments"
ANALYSIS_DIR: Final = "analysis"
# A trial's resume checkpoint (TrainingState.save) and its final checkpoint (= a bundle's model files).
RESUME_FILE: Final = "resume.json"
BEST_WEIGHTS_FILE: Final = "best_weights.npz"
TRIAL_FILES: Final = (schema.MODEL_FILE, schema.SETTINGS_FILE, schema.METRICS_FILE, schema.HISTORY_FILE)
# A head-only trial's final checkpoint: its head and its frozen backbone's identity in place of `model.keras`
HEAD_ONLY_TRIAL_FILES: Final = (*schema.HEAD_ONLY_FILES, *TRIAL_FILES[1:])


def storage_uri(storage_path: str | None) -> str:
    """`--storage-path` as Tune wants it: an absolute local path, or the URI unchanged."""
    path = storage_path or DEFAULT_STORAGE
    return path if is_uri(path) else str(Path(path).resolve())


def split_experiment_path(path: str) -> tuple[str, str]:
    """`experiments/demo` → (`experiments`, `demo`); `s3://b/x/demo` → (`s3://b/x`, `demo`)."""
    text = path.rstrip("/")
    if is_uri(text):
        scheme, rest = text.split("://", 1)
        head, _, name = rest.rpartition("/")
        if not head or not name:
            raise ConfigError(f"experiment URI needs a bucket and a name: {path!r}")
        return f"{scheme}://{head}", name
    resolved = Path(text).resolve()
    return str(resolved.parent), resolved.name


class ExperimentFiles:
    """Files exifray keeps next to Tune's results, on a local path or any pyarrow filesystem (s3://...)."""

    def __init__(self, storage_path: str, name: str):
        self.storage_path, self.name = storage_path, name
        self.local = not is_uri(storage_path)
        self.fs: pafs.FileSystem
        self.fs, base = filesystem_and_path(storage_path)
        self.root = f"{base}/{name}"
        self.uri = self.root if self.local else storage_path.rstrip("/") + "/" + name

    @classmethod
    def at(cls, path: str) -> ExperimentFiles:
        """The experiment (or any folder) at `path`: a local path or a URI."""
        return cls(*split_experiment_path(path))

    def path(self, filename: str) -> str:
        return f"{self.root}/{filename}"

    def check_reachable(self) -> None:
        """Remote storage: the bucket must exist and answer (Tune would fail late, deep in a trial, otherwise)."""
        if self.local:
            return
        import pyarrow.fs as pafs

        bucket = self.root.split("/", 1)[0]
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        where = f" at {endpoint} (AWS_ENDPOINT_URL)" if endpoint else ""
        try:
            info = self.fs.get_file_info(bucket)
        except OSError as exc:
            raise ConfigError(f"cannot reach the storage of {self.uri}{where}: {exc}") from None
        if info.type != pafs.FileType.Directory:
            raise ConfigError(f"the bucket {bucket!r} of --storage-path {self.uri} does not exist{where}; create it "
                              f"first")

    def exists(self, filename: str = "") -> bool:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path(filename) if filename else self.root)
        return bool(info.type != pafs.FileType.NotFound)

    def write_bytes(self, filename: str, data: bytes) -> None:
        if self.local:
            atomic_write_bytes(self.path(filename), data)
            return
        self.fs.create_dir(self.root, recursive=True)
        with self.fs.open_output_stream(self.path(filename)) as stream:  # S3: visible only once complete
            stream.write(data)

    def read_bytes(self, filename: str) -> bytes:
        with self.fs.open_input_stream(self.path(filename)) as stream:
            return bytes(stream.readall())

    def read_text(self, filename: str) -> str:
        return self.read_bytes(filename).decode("utf-8")

    def has_tune_state(self) -> bool:
        """Whether Tune has saved its experiment state here yet."""
        import pyarrow.fs as pafs

        if not self.exists():
            return False
        listing = self.fs.get_file_info(pafs.FileSelector(self.root))
        return any(Path(info.path).name.startswith("experiment_state") for info in listing)
