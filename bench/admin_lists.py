"""
How fast the admin answers at a real blog's size: every list, filter, search and the tag box.

    python bench/admin_lists.py [--posts 100000] [--repeat 5]

Builds (once) the data set bench/run.py uses (bench/dataset.py: 100,000 posts, 5,000 tags), copies it,
migrates the copy, logs a superuser in with Django's test client (the whole middleware stack, no
network) and requests each admin URL `--repeat` times after one warm-up: it prints the median and the
worst time and the number of SQL queries of each. SQLite, DEBUG off, page cache irrelevant (admin).
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import dataset_file  # noqa: E402

TARGET_MS = 500


def admin_urls():
    """Name -> (method, path, data) of what an author opens, taken from the data."""
    import linkblog

    big = linkblog.tags_with_counts().order_by("-post_count").first()
    blogmark = linkblog.Blogmark.objects.order_by("-created").first()
    year = blogmark.created.year - 3
    urls = {}
    for kind in ("entry", "blogmark", "quotation"):
        base = f"/admin/linkblog/{kind}/"
        urls.update({
            f"{kind} list": ("get", base, None),
            f"{kind} list page 40": ("get", f"{base}?p=40", None),
            f"{kind} by tag": ("get", f"{base}?tag={big.tag}", None),
            f"{kind} search": ("get", f"{base}?q=python", None),
            f"{kind} scheduled": ("get", f"{base}?status=scheduled", None),
            f"{kind} drafts": ("get", f"{base}?status=draft", None),
            f"{kind} a year": ("get", f"{base}?year={year}", None),
            f"{kind} search with tag:": ("get", f"{base}?q=python+tag:{big.tag}", None),
        })
    urls.update({
        "blogmark add form": ("get", "/admin/linkblog/blogmark/add/?link_url=https://example.com/&link_title=x", None),
        "blogmark change form": ("get", f"/admin/linkblog/blogmark/{blogmark.pk}/change/", None),
        "tag list": ("get", "/admin/linkblog/tag/", None),
        "tag list search": ("get", "/admin/linkblog/tag/?q=py", None),
        "tag box: 'p'": ("get", "/admin/autocomplete/?term=p&app_label=linkblog&model_name=entry&field_name=tags", None),
        "tag box: 'pyth'": ("get", "/admin/autocomplete/?term=pyth&app_label=linkblog&model_name=entry&field_name=tags", None),
        "tag box: 'e'": ("get", "/admin/autocomplete/?term=e&app_label=linkblog&model_name=entry&field_name=tags", None),
        "markdown preview": ("post", "/admin/linkblog/preview/", {"text": blogmark.commentary * 5}),
        "bookmarklet (blogged URL)": ("get", "/admin/linkblog/blog-this/", {"url": blogmark.link_url, "title": "x", "selection": "y"}),
    })
    return urls


def measure(client, method, path, data, repeat):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    getattr(client, method)(path, data)  # warm-up
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = getattr(client, method)(path, data)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return {"median_ms": round(statistics.median(times), 1), "worst_ms": round(max(times), 1),
            "queries": len(queries), "bytes": len(response.content)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    source = dataset_file(args.posts, args.seed)
    copy = Path(tempfile.mkdtemp(prefix="linkblog-admin-bench-")) / "db.sqlite3"
    shutil.copy(source, copy)
    os.environ.update(DATABASE_URL=f"sqlite:///{copy}", DJANGO_DEBUG="false", DJANGO_SECRET_KEY="admin-bench-not-a-secret",
                      DJANGO_SECURE_COOKIES="false", DJANGO_ALLOWED_HOSTS="testserver")
    sys.path.insert(0, str(ROOT))
    import linkblog
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    linkblog.app._prepare()
    call_command("migrate", verbosity=0)
    client = Client()
    client.force_login(User.objects.create_superuser("bench", "bench@example.com", None))
    results = {}
    print(f"{args.posts} posts, SQLite; median and worst of {args.repeat} requests after a warm-up")
    for name, (method, path, data) in admin_urls().items():
        row = results[name] = measure(client, method, path, data, args.repeat)
        flag = "" if row["worst_ms"] < TARGET_MS else "  <-- over target"
        print(f"{name:30} {row['median_ms']:7.1f} ms  worst {row['worst_ms']:7.1f} ms  {row['queries']:3} queries  {row['bytes'] // 1024:4} KB{flag}", flush=True)
    out = ROOT / "bench" / "results" / f"admin-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"posts": args.posts, "repeat": args.repeat, "results": results}, indent=1))
    shutil.rmtree(copy.parent)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
