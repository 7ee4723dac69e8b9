"""exifray: does a photo's EXIF make an image classifier better, and at what energy cost?

`import exifray` is cheap: TensorFlow, Ray and aiohttp are imported only inside the functions that
need them (see DESIGN.md, "Heavy dependencies stay at the edges").
"""

__version__ = "0.1.0"
