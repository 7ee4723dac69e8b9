"""The exifray exception tree: one base class, each error also a built-in it resembles."""


class ExifrayError(Exception):
    """Base of every error exifray raises on purpose."""


class ConfigError(ExifrayError, ValueError):
    """A setting, flag or configuration file has a bad value."""


class DataError(ExifrayError, ValueError):
    """An input artifact (crawl dir, dataset dir, EXIF file) is missing or malformed."""


class InputNotFoundError(DataError, FileNotFoundError):
    """A path the user named does not exist."""


class UnknownNameError(ConfigError, KeyError):
    """A name (backbone, EXIF tag, scenario) is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ExifParseError(DataError):
    """A whole EXIF source (file, JSON body) could not be read. Single bad values never raise."""


def require(condition: bool, message: str) -> None:
    """Validation in one line: a ConfigError with `message` (which names the setting and the bad value)."""
    if not condition:
        raise ConfigError(message)


class TrialFailed(ExifrayError, RuntimeError):
    """Training diverged (NaN loss) or could not run; the sweep records the trial as errored."""
