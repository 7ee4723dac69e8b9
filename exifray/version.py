"""The package version, in its own module so that every layer can read it (`exifray/__init__.py` sits above
the Python API it re-exports)."""

__version__ = "0.1.0"
