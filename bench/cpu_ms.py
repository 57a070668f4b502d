"""
CPU milliseconds per request of the pages bench/run.py loads, plus the archives and the sitemap
(pages crawlers walk, never cached for long), in one process.

    python bench/cpu_ms.py --database sqlite:////path/posts.sqlite3 [--repeat 30] [--wall]

Django's test client, page cache off, DEBUG off, the database migrated first (in place, as
bench/run.py does). CPU time (time.process_time) is what a shared machine distorts least: it counts
this process's work, not the time other processes took the cores.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def cpu_ms(client, path, repeat, clock=time.process_time):
    for _ in range(3):  # warm: caches, stored fragments, connections
        assert client.get(path).status_code == 200, path
    start = clock()
    for _ in range(repeat):
        client.get(path)
    return round((clock() - start) * 1000 / repeat, 2)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--wall", action="store_true",
                        help="wall-clock time instead: with PostgreSQL, whose server's work is not this process's CPU")
    args = parser.parse_args(argv)
    os.environ.update(DATABASE_URL=args.database, DJANGO_DEBUG="false", LINKBLOG_PAGE_CACHE="false",
                      LINKBLOG_BENCH="1", DJANGO_SECRET_KEY="cpu-ms")
    sys.path.insert(0, str(ROOT))
    import linkblog
    from django.core.management import call_command
    from django.test import Client
    from dataset import CONTENT_WORDS
    from probe import choose_urls

    linkblog.app._prepare()
    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # DEBUG off reads the manifest
    urls, _ = choose_urls()
    urls.pop("ceiling (hello world)")
    newest = linkblog.Entry.objects.published().order_by("-created").first().created
    big = linkblog.tags_with_counts().order_by("-post_count").first().tag
    month = f"/{newest.year}/{linkblog.MONTHS[newest.month - 1]}/"
    urls.update({"search, a rare word": f"/search/?q={CONTENT_WORDS[1500]}", "search, common word with tag:": f"/search/?q=python+tag:{big}",
                 "archive index": "/archive/", "archive year": f"/{newest.year}/", "archive month": month,
                 "archive day": f"{month}{newest.day}/", "sitemap index": "/sitemap.xml",
                 "sitemap, a page of posts": "/sitemap-posts.xml", "sitemap, tags": "/sitemap-tags.xml"})
    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    clock = time.perf_counter if args.wall else time.process_time
    print(json.dumps({name: cpu_ms(client, path, args.repeat, clock) for name, path in urls.items()}, indent=1))


if __name__ == "__main__":
    main()
