"""
Import benchmark: posts per second and peak memory for importing a large NDJSON file into SQLite.

    python bench/import_bench.py [--posts 100000] [--seed 7] [--baseline-posts 10000]

Writes bench/dataset.py's realistic posts (the data set bench/run.py serves: Markdown bodies of
real length, 5,000 long-tail tags, twenty years of dates) as NDJSON, then measures, each in a fresh
process so that peak memory is the phase's own:

- baseline: render() alone (Markdown + sanitizing) in one process, no database: what one core must
  do per post at the least; times the number of cores, it bounds any import's rate;
- import: the whole file into a freshly migrated SQLite database (one transaction), as
  `python linkblog.py import` does it: Markdown rendered by one process per core;
- import in one process (`--processes 1`), into another fresh database;
- reimport: the same file again (every post found and unchanged);
- export: the whole blog back out as NDJSON;
- import with Markdown switched off (a diagnostic, into another fresh database): what everything but
  rendering costs.

Prints a table and writes the numbers as JSON to bench/results/import-<time>.json. Speed is reported
as a ratio against the baseline measured in the same run, since the machine's speed varies.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGET_POSTS_PER_SECOND = 5000

# --- The data set: bench/dataset.py's realistic posts, written as our NDJSON ----------------------

sys.path.insert(0, str(ROOT / "bench"))
import dataset  # noqa: E402  (the same posts bench/run.py serves)


def ndjson_record(record):
    """A bench/dataset.py record as a line of the import format (see README, "Import and export")."""
    fields = {key: value for key, value in record.items() if key not in ("kind", "created", "slug", "is_draft", "tags")}
    return {"type": record["kind"], "slug": record["slug"], **fields, "created": record["created"].isoformat(),
            "tags": record["tags"], "is_draft": record["is_draft"]}


def write_ndjson(path, posts, seed):
    with open(path, "w", encoding="utf-8") as output:
        for record in dataset.generate(posts, seed):
            output.write(json.dumps(ndjson_record(record), ensure_ascii=False) + "\n")


# --- Phases, each run in its own process -----------------------------------------------------------


def load_linkblog(database):
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["DJANGO_DEBUG"] = "false"  # DEBUG would keep every query in memory
    os.environ.setdefault("DJANGO_SECRET_KEY", "import-bench-not-a-secret")
    sys.path.insert(0, str(ROOT))
    import linkblog

    linkblog.app._prepare()
    return linkblog


def phase_baseline(path, database, limit):
    """render() on each post, as an import must: the floor for an import's time per post."""
    linkblog = load_linkblog(database)
    from blogworks.importer import ImportReport, clean_record

    report, now = ImportReport(), datetime.now(timezone.utc)
    posts = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            cleaned = clean_record(json.loads(line), report, now, linkblog.POST_MODELS, linkblog.Tag)
            posts.append(linkblog.POST_MODELS[cleaned.kind](**cleaned.fields))
            if len(posts) == limit:
                break
    started = time.perf_counter()
    for post in posts:
        post.render()
    return {"posts": len(posts), "seconds": time.perf_counter() - started}


def phase_import(path, database, processes):
    """What `python linkblog.py import FILE [--processes N]` does, timed from opening the file to the commit."""
    linkblog = load_linkblog(database)
    from blogworks.cli import default_render_processes
    from blogworks.importer import rendering_processes

    processes = processes or default_render_processes()  # 0: the command line's default
    started = time.perf_counter()
    with open(path, "rb") as stream, rendering_processes(processes, linkblog.POST_MODELS) as render_map:
        report = linkblog.import_posts(stream, render_map=render_map)
    seconds = time.perf_counter() - started
    outcomes = {outcome: sum(report.counts[kind, outcome] for kind in linkblog.POST_MODELS) for outcome in report.OUTCOMES}
    return {"posts": sum(outcomes.values()), "seconds": seconds, "failed": report.failed, "processes": processes, **outcomes}


def phase_import_without_markdown(path, database, _):
    """Diagnostic: the same import with Markdown rendering switched off, to show what the rest costs."""
    load_linkblog(database)
    from blogworks import text

    text.render_markdown = lambda markdown_text: ""
    return phase_import(path, database, _)


def phase_export(path, database, _):
    linkblog = load_linkblog(database)
    started = time.perf_counter()
    lines = 0
    with open(path, "w", encoding="utf-8", newline="\n") as output:
        for line in linkblog.export("ndjson"):
            output.write(line)
            lines += 1
    return {"lines": lines, "seconds": time.perf_counter() - started}


PHASES = {"baseline": phase_baseline, "import": phase_import, "import-one-process": phase_import, "reimport": phase_import,
          "import-without-markdown": phase_import_without_markdown, "export": phase_export}


def run_phase(name, path, database, number=0):
    """Run one phase in a fresh Python process; its peak memory is that process's own."""
    result = subprocess.run([sys.executable, __file__, "--phase", name, str(path), str(database), str(number)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def child(name, path, database, number):
    result = PHASES[name](path, database, int(number))  # posts to render, or processes to import with
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["worker_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


def migrate(database):
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
    subprocess.run(["nanodjango", "manage", "linkblog.py", "migrate", "-v0"], cwd=ROOT, env=environment, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline-posts", type=int, default=10_000, help="posts rendered for the baseline")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="import-bench-") as folder:
        folder = Path(folder)
        data, database = folder / "blog.ndjson", folder / "bench.sqlite3"
        started = time.perf_counter()
        write_ndjson(data, args.posts, args.seed)
        print(f"wrote {args.posts:,} posts ({data.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        migrate(database)
        results = {"posts": args.posts, "file_mb": round(data.stat().st_size / 1e6, 1), "cpus": os.cpu_count(),
                   "load_average": os.getloadavg()[0]}
        results["idle"] = run_phase("baseline", data, database, 1)
        results["baseline"] = run_phase("baseline", data, database, min(args.baseline_posts, args.posts))
        results["import"] = run_phase("import", data, database)
        results["reimport"] = run_phase("reimport", data, database)
        results["export"] = run_phase("export", folder / "export.ndjson", database)
        one, plain = folder / "one.sqlite3", folder / "plain.sqlite3"
        migrate(one)
        results["import_one_process"] = run_phase("import-one-process", data, one, 1)
        migrate(plain)
        results["import_without_markdown"] = run_phase("import-without-markdown", data, plain)
    report(results)


def rate(phase, count="posts"):
    return phase[count] / phase["seconds"]


def report(results):
    baseline = rate(results["baseline"])
    rows = [
        ("render() only (baseline)", results["baseline"]["posts"], results["baseline"]),
        (f"import ({results['import']['processes']} processes)", results["import"]["created"], results["import"]),
        ("import (1 process)", results["import_one_process"]["created"], results["import_one_process"]),
        ("re-import (all unchanged)", results["reimport"]["unchanged"], results["reimport"]),
        ("export NDJSON", results["export"]["lines"], results["export"]),
        ("import, Markdown off (diag.)", results["import_without_markdown"]["created"], results["import_without_markdown"]),
    ]
    print(f"\n{results['posts']:,} posts, {results['file_mb']} MB of NDJSON, {results['cpus']} CPUs, load {results['load_average']:.1f}")
    print(f"{'phase':28} {'items':>8} {'seconds':>8} {'per s':>8} {'x base':>7} {'peak RSS':>9}")
    for name, items, phase in rows:
        per_second = items / phase["seconds"]
        print(f"{name:28} {items:8,} {phase['seconds']:8.1f} {per_second:8,.0f} {per_second / baseline:7.2f} {phase['peak_rss_mb']:7.0f} MB")
    print(f"(a process that only loads linkblog peaks at {results['idle']['peak_rss_mb']:.0f} MB; a rendering "
          f"process at {results['import']['worker_peak_rss_mb']:.0f} MB)")
    print(f"target {TARGET_POSTS_PER_SECOND:,} posts/s; import reached {rate(results['import'], 'created'):,.0f}; "
          f"render() alone on all {results['cpus']} cores allows at most {baseline * results['cpus']:,.0f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = RESULTS / f"import-{datetime.now():%Y%m%d-%H%M%S}.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {output.relative_to(ROOT)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--phase":
        child(*sys.argv[2:])
    else:
        main()
