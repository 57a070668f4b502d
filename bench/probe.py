"""
The URLs bench/run.py loads for one data set, and the SQL queries each one makes.

    python bench/probe.py --database sqlite:////tmp/bench.sqlite3

Runs in its own process with the server's environment (page cache on or off), imports linkblog
against the benchmark database, picks the URLs from the data (the biggest tag, its last page, a
published permalink, ...), then requests each one twice with Django's test client under
CaptureQueriesContext: the second request is the steady state a warm server sees. Prints JSON.
"""

import argparse
import json
import os
import sys
from math import ceil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from dataset import SEARCH_WORDS  # noqa: E402  (two words a few percent of posts use)

COMMON_WORD = "python"  # in about half of the posts (bench/dataset.py's first topic)


def choose_urls():
    """Name -> path of every URL the benchmark loads, taken from the data."""
    from django.conf import settings

    import linkblog

    tags = linkblog.tags_with_counts().order_by("-post_count")[:2]
    big, second = tags[0], tags[1]
    last_page = max(1, ceil(big.post_count / settings.LINKBLOG_PAGE_SIZE))
    blogmark = linkblog.Blogmark.objects.published().filter(tags=second).order_by("created")
    post = blogmark[blogmark.count() // 2]
    return {
        "ceiling (hello world)": "/bench/hello/",
        "home": "/",
        "tag page 1": f"/tags/{big.tag}/",
        "tag page last": f"/tags/{big.tag}/?page={last_page}",
        "combined tags": f"/tags/{big.tag}+{second.tag}/",
        "permalink": post.get_absolute_url(),
        "feed": "/atom/everything/",
        "search": "/search/?q=" + "+".join(SEARCH_WORDS),
        "search, common word": f"/search/?q={COMMON_WORD}",
        "api items": f"/api/items?tag={big.tag}",
    }, {"big_tag": big.tag, "big_tag_posts": big.post_count, "big_tag_pages": last_page}


def count_queries(path):
    """Status and queries of a warm request (the second of two) to `path`."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    # As production's TLS-terminating proxy sends it (plain HTTP would be redirected).
    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https", raise_request_exception=False)
    client.get(path)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    return {"status": response.status_code, "queries": len(captured.captured_queries)}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    args = parser.parse_args(argv)
    os.environ["DATABASE_URL"] = args.database
    sys.path.insert(0, str(ROOT))
    import linkblog

    linkblog.app._prepare()
    urls, facts = choose_urls()
    probes = {name: {"path": path, **count_queries(path)} for name, path in urls.items()}
    print(json.dumps({"urls": probes, **facts}))


if __name__ == "__main__":
    main()
