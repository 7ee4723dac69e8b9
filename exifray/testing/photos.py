"""Photos in every colour mode and orientation a user's folder holds, generated for tests.

    paths = write_mode_photos(tmp / "photos")      # {"cmyk.jpg": Path, "grey16.png": Path, ...}

Each upright picture has a red top-left quadrant on a blue ground, so a test can check that orientation was
applied (`is_upright`). The orientation photos store their pixels turned the way a camera would with EXIF
`Orientation` 1–8, so applying the tag brings each back upright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# EXIF orientation → the transpose a camera's stored pixels need *undone* (the inverse of Pillow's exif_transpose).
_STORED = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_90",
           7: "TRANSVERSE", 8: "ROTATE_270"}
ORIENTATION_TAG = 0x0112


def upright(width: int = 96, height: int = 64) -> np.ndarray:
    """HWC uint8: blue ground, red top-left quadrant."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 2] = 200
    pixels[: height // 2, : width // 2] = (220, 20, 20)
    return pixels


def is_upright(image: np.ndarray) -> bool:
    """The bright (red) quadrant is top-left, and in a colour photo it is red on blue (not inverted or swapped)."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    quadrants = [image[:h - 2, :w - 2], image[:h - 2, w + 2:], image[h + 2:, :w - 2], image[h + 2:, w + 2:]]
    means = [q.reshape(-1, 3).mean(axis=0) for q in quadrants]
    luma = [float(m @ (0.299, 0.587, 0.114)) for m in means]
    brightest = luma[0] > max(luma[1:]) + 30
    grey = float(np.ptp(means[0])) < 10
    return brightest and (grey or bool(means[0][0] > 150 > means[0][2] and means[3][2] > 150 > means[3][0]))


def write_mode_photos(folder: str | Path) -> dict[str, Path]:
    """CMYK JPEG, greyscale JPEG and PNG, palette PNG (with and without transparency), RGBA PNG, 16-bit
    greyscale PNG, a JPEG without EXIF, JPEGs with EXIF orientation 1–8 (and camera EXIF), a WebP."""
    from PIL import Image

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(upright())
    paths: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **kwargs: object) -> None:
        paths[name] = out / name
        image.save(paths[name], **kwargs)

    save("cmyk.jpg", rgb.convert("CMYK"), quality=95)
    save("grey.jpg", rgb.convert("L"), quality=95)
    save("grey.png", rgb.convert("L"))
    save("palette.png", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8))
    transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    save("palette_transparent.png", transparent, transparency=0)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(255)
    save("rgba.png", rgba)
    grey16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)  # full 16-bit range
    save("grey16.png", Image.fromarray(grey16))
    save("no_exif.jpg", rgb, quality=95)
    save("photo.webp", rgb, quality=95)
    for orientation in range(1, 9):
        stored = rgb if orientation == 1 else rgb.transpose(getattr(Image.Transpose, _STORED[orientation]))
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        exif[0x010F] = "exifray"  # Make
        exif.get_ifd(0x8769)[0x829D] = 2.8  # FNumber in the Exif sub-IFD
        exif.get_ifd(0x8769)[0x8827] = 200  # ISO
        save(f"orientation_{orientation}.jpg", stored, quality=95, exif=exif)
    return paths


def write_labelled_jpegs(folder: str | Path, photos: int, *, size: int = 200, seed: int = 0) -> dict[str, str]:
    """`folder/<class>/<photo id>.jpg` for the classes `indoor` and `outdoor`, with EXIF embedded in each JPEG
    (FNumber, ISO, ExposureTime, Flash differ by class, and the pictures by brightness and hue) so that a model
    learns from both. Returns photo id → class. A folder-layout dataset of these has EXIF from the JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = {}
    for index in range(photos):
        label = ("indoor", "outdoor")[index % 2]
        photo_id = str(50_000_000_000 + seed * 100_000 + index)
        outdoor = label == "outdoor"
        base = np.array((120, 170, 230) if outdoor else (190, 140, 90), dtype=np.float64)
        pixels = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        exif = Image.Exif()
        exif[0x010F] = "exifray"
        sub = exif.get_ifd(0x8769)
        sub[0x829D] = float(rng.choice((8.0, 11.0)) if outdoor else rng.choice((1.8, 2.8)))  # FNumber
        sub[0x8827] = int(rng.choice((100, 200)) if outdoor else rng.choice((800, 1600, 3200)))  # ISO
        sub[0x829A] = float(1 / rng.choice((500, 1000)) if outdoor else 1 / rng.choice((30, 60)))  # ExposureTime
        if index % 7 != 3:  # some photos carry no Flash tag: the encoder's missing path
            sub[0x9209] = 0 if outdoor else 1  # Flash
        target = Path(folder) / label / f"{photo_id}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target, quality=90, exif=exif)
        labels[photo_id] = label
    return labels


def train_bundle(root: str | Path, *, photos: int, photo_px: int = 200, sizes: tuple[int, ...] = (24,),
                 image_size: int | None = None, backbone: str = "TestTinyCNN", epochs: int = 2,
                 exif_tags: tuple[str, ...] = ("FNumber", "ISO", "ExposureTime", "Flash"), seed: int = 5,
                 ) -> tuple[Path, Path, Path]:
    """(photo folder, dataset, bundle) under `root`: `write_labelled_jpegs`, a folder-layout ingest (EXIF from the
    JPEGs themselves), and a fusion trial's final folder, which every bundle reader accepts. Joins the running Ray
    (or starts one for the ingest)."""
    from exifray.config import IngestConfig, TrialConfig
    from exifray.data.ingest import run_ingest
    from exifray.train import run_trial

    root = Path(root)
    folder = root / "photos"
    write_labelled_jpegs(folder, photos, size=photo_px, seed=seed)
    dataset = root / "dataset"
    run_ingest(IngestConfig(inputs=(str(folder),), out=str(dataset), sizes=sizes, shard_size=64))
    bundle = root / "bundle"
    config = TrialConfig(modality="fusion", backbone=backbone, image_size=image_size or sizes[0], epochs=epochs,
                         batch_size=32, exif_tags=exif_tags, fusion_width=8)
    run_trial(config, dataset, out_dir=bundle)
    return folder, dataset, bundle
