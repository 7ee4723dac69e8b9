"""`python -m exifray ...` is the same as the `exifray` console script."""

from exifray.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
