"""Test and smoke-run machinery that ships with the package (the job entrypoints in `jobs/` use it too):

- `simulator`: a fake Flickr REST API and image host (aiohttp) shaped like the real responses;
- `datasets`: `make_dataset()`, the "synthesize a crawl dir, then ingest it" recipe;
- `smoke`: the `--smoke-test` inputs of the job entrypoints.

Nothing here is imported by the library itself.
"""
