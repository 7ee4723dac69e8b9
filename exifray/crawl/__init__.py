"""Crawling Flickr. `records` (the CRAWL DIR format) is import-light; the aiohttp client lives apart."""
