"""
CPU time of one uncached search request, in one process: the figure issue 15's search targets rest on.

    python bench/search_cpu.py [--posts 100000] [--repeat 20] [--profile NAME]

Copies the data set bench/run.py uses (built once by it), migrates the copy, and requests each search
with Django's test client (the whole middleware stack, page cache off, no network) `--repeat` times
after a warm-up, measuring process CPU time (time.process_time), which a shared machine distorts less
than wall-clock time. The searches: two words a few percent of posts use (bench/run.py's search), a
rare word, a word found in ~40% of posts (`python`), that word with a tag: filter and on page 3, and a
filter alone. `--profile NAME` prints cProfile's top functions for one of them instead.
"""

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from dataset import CONTENT_WORDS, SEARCH_WORDS  # noqa: E402
from run import dataset_file  # noqa: E402


def search_urls():
    """Name -> path of each search measured."""
    import linkblog

    big = linkblog.tags_with_counts().order_by("-post_count").first()
    return {
        "two words (bench/run.py)": "/search/?q=" + "+".join(SEARCH_WORDS),
        "rare word": f"/search/?q={CONTENT_WORDS[1500]}",
        "common word": "/search/?q=python",
        "common word, page 3": "/search/?q=python&page=3",
        "common word + tag:": f"/search/?q=python+tag:{big.tag}",
        "filter alone": "/search/?q=type:entry",
        "feed, common word": "/search.atom?q=python",
    }


def cpu_ms(client, path, repeat):
    """Median CPU milliseconds of `repeat` requests after a warm-up, and the last response."""
    client.get(path)
    times = []
    for _ in range(repeat):
        started = time.process_time()
        response = client.get(path)
        times.append((time.process_time() - started) * 1000)
    assert response.status_code == 200, (path, response.status_code)
    return statistics.median(times), response


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", help="a search's name: print its profile instead")
    args = parser.parse_args(argv)
    copy = Path(tempfile.mkdtemp(prefix="linkblog-search-bench-")) / "db.sqlite3"
    shutil.copy(dataset_file(args.posts, args.seed), copy)
    os.environ.update(DATABASE_URL=f"sqlite:///{copy}", DJANGO_DEBUG="false", DJANGO_SECRET_KEY="search-bench-not-a-secret",
                      DJANGO_ALLOWED_HOSTS="testserver", LINKBLOG_PAGE_CACHE="false")
    sys.path.insert(0, str(ROOT))
    import linkblog
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from django.test.utils import override_settings

    linkblog.app._prepare()
    call_command("migrate", verbosity=0)
    # No collectstatic here: the plain storage's URLs cost the same as the manifest's.
    override_settings(STORAGES={**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}).enable()
    client = Client(HTTP_X_FORWARDED_PROTO="https")
    urls = search_urls()
    try:
        if args.profile:
            client.get(urls[args.profile])
            profiler = cProfile.Profile()
            profiler.runcall(lambda: [client.get(urls[args.profile]) for _ in range(args.repeat)])
            pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(35)
            return
        print(f"{args.posts} posts, SQLite; median CPU ms of {args.repeat} requests after a warm-up")
        for name, path in urls.items():
            ms, response = cpu_ms(client, path, args.repeat)
            with CaptureQueriesContext(connection) as queries:
                client.get(path)
            print(f"{name:28} {ms:7.1f} ms  {len(queries):2} queries  {len(response.content) // 1024:4} KB  {path}", flush=True)
    finally:
        shutil.rmtree(copy.parent)


if __name__ == "__main__":
    main()
