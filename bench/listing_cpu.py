"""
CPU time per request of the listing pages, in one process (Django's test client, page cache off).

    python bench/listing_cpu.py --database sqlite:////tmp/copy.sqlite3 [--repeat 20]

The shared machine distorts wall-clock rates; CPU time in one process much less. Migrate the copy
first (`nanodjango manage linkblog.py migrate` with DATABASE_URL set). Prints ms per request (median
of --repeat warm requests), and the SQL queries of a warm request with their summed time, per URL.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + "x" * 50)
    os.environ.update(DATABASE_URL=args.database, LINKBLOG_PAGE_CACHE="false", DJANGO_DEBUG="false", LINKBLOG_BENCH="1")
    sys.path.insert(0, str(ROOT))
    import linkblog
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from probe import choose_urls

    linkblog.app._prepare()
    urls, facts = choose_urls()
    urls = {name: path for name, path in urls.items() if name not in ("permalink", "search")}
    urls["/tags/"] = "/tags/"
    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    print(facts)
    for name, path in urls.items():
        assert client.get(path).status_code == 200, path
        times = []
        for _ in range(args.repeat):
            start = time.process_time()
            client.get(path)
            times.append((time.process_time() - start) * 1000)
        with CaptureQueriesContext(connection) as captured:
            client.get(path)
        sql_ms = sum(float(query["time"]) for query in captured.captured_queries) * 1000
        print(f"{name:22} {statistics.median(times):7.2f} ms  {len(captured.captured_queries):3} queries {sql_ms:6.1f} ms  {path}")


if __name__ == "__main__":
    main()
