"""
Import benchmark: posts per second and peak memory for importing a large NDJSON file into SQLite.

    python bench/import_bench.py [--posts 100000] [--seed 7] [--baseline-posts 10000]

Writes a realistic NDJSON file (Markdown bodies of real length, long-tail tags, twenty years of
dates), then measures, each in a fresh process so that peak memory is the phase's own:

- baseline: render() alone (Markdown + sanitizing), no database: the least an import must do per post;
- import: `import_file()` of the whole file into a freshly migrated SQLite database (one transaction);
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
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGET_POSTS_PER_SECOND = 5000

# --- A realistic data set, as NDJSON lines --------------------------------------------------------

WORDS = """the a of to and in is that for it with as on be this are by or from at not you can but have which
we will an more one all if their they has about was so what there when been use like just into than other
some them only how then its also new these would make could our way time people work first most need data
model code database query page server request response python django sqlite postgres index cache template
view middleware feed search tag post blog link quote release version library tool project open source web
browser javascript css html api json http client test benchmark memory latency worker process thread async
language prompt token context agent embedding vector inference paper research useful neat trick pattern""".split()
TOPICS = """python django sqlite postgresql javascript css html security datasette llms ai openai anthropic
rust go webassembly docker git github open-source testing pytest caching search rss atom markdown unicode
accessibility browsers http apis json oauth privacy journalism maps visualization pandas jupyter""".split()
KINDS = ["blogmark"] * 15 + ["entry"] * 4 + ["quotation"]


class Writer:
    def __init__(self, seed):
        self.random = random.Random(seed)
        # 3,000 tags with long-tail popularity: a few carry thousands of posts, most a handful.
        self.tags = TOPICS + [f"{first}-{second}" for first in TOPICS for second in WORDS[:80]][: 3000 - len(TOPICS)]
        self.tag_weights = [1 / (rank + 5) for rank in range(len(self.tags))]

    def words(self, low, high):
        return " ".join(self.random.choices(WORDS, k=self.random.randint(low, high)))

    def sentence(self):
        text, roll = self.words(6, 20), self.random.random()
        if roll < 0.15:
            text += f" [{self.words(1, 3)}]({self.url()})"
        elif roll < 0.25:
            text += f" `{self.random.choice(WORDS)}()`"
        elif roll < 0.30:
            text += f" **{self.words(1, 3)}**"
        return text.capitalize() + "."

    def paragraph(self, low=2, high=6):
        return " ".join(self.sentence() for _ in range(self.random.randint(low, high)))

    def url(self):
        return f"https://{self.random.choice(['example.com', 'example.org', 'blog.example.net'])}/{self.words(1, 3).replace(' ', '/')}"

    def body(self):
        blocks = [self.paragraph(3, 7)]
        for _ in range(self.random.randint(2, 9)):
            roll = self.random.random()
            if roll < 0.12:
                blocks.append("## " + self.words(2, 5).capitalize())
            elif roll < 0.25:
                blocks.append("```python\n" + "\n".join(f"{self.random.choice(WORDS)} = {self.random.randint(1, 99)}" for _ in range(4)) + "\n```")
            elif roll < 0.37:
                blocks.append("\n".join(f"- {self.words(3, 10)}" for _ in range(self.random.randint(3, 6))))
            blocks.append(self.paragraph())
        return "\n\n".join(blocks)

    def record(self, number, created):
        kind = self.random.choice(KINDS)
        record = {"type": kind, "slug": f"post-{number}"}
        if kind == "entry":
            record.update(title=self.words(3, 9).capitalize(), body=self.body())
        elif kind == "blogmark":
            record.update(link_url=self.url(), link_title=self.words(3, 9).capitalize(),
                          commentary="" if self.random.random() < 0.1 else "\n\n".join(self.paragraph(1, 4) for _ in range(self.random.randint(1, 2))))
        else:
            record.update(quotation=self.paragraph(1, 3), source=self.words(2, 2).title(), source_url=self.url())
        tags = set(self.random.choices(self.tags, self.tag_weights, k=self.random.choice([1, 2, 2, 3, 3, 4, 5])))
        record.update(created=created.isoformat(), tags=sorted(tags), is_draft=self.random.random() < 0.005)
        return record


def write_ndjson(path, posts, seed):
    writer, start = Writer(seed), datetime(2006, 1, 1, tzinfo=timezone.utc)
    span = 20 * 365 * 24 * 3600
    moments = sorted(writer.random.randrange(span) for _ in range(posts))
    with open(path, "w", encoding="utf-8") as output:
        for number, second in enumerate(moments):
            output.write(json.dumps(writer.record(number, start + timedelta(seconds=second)), ensure_ascii=False) + "\n")


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
    report, now = linkblog.ImportReport(), datetime.now(timezone.utc)
    posts = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            cleaned = linkblog.clean_record(json.loads(line), report, now)
            posts.append(linkblog.POST_MODELS[cleaned.kind](**cleaned.fields))
            if len(posts) == limit:
                break
    started = time.perf_counter()
    for post in posts:
        post.render()
    return {"posts": len(posts), "seconds": time.perf_counter() - started}


def phase_import(path, database, _):
    linkblog = load_linkblog(database)
    started = time.perf_counter()
    with open(path, "rb") as stream:
        report = linkblog.import_file(stream)
    seconds = time.perf_counter() - started
    outcomes = {outcome: sum(report.counts[kind, outcome] for kind in linkblog.POST_MODELS) for outcome in report.OUTCOMES}
    return {"posts": sum(outcomes.values()), "seconds": seconds, "failed": report.failed, **outcomes}


def phase_import_without_markdown(path, database, _):
    """Diagnostic: the same import with Markdown rendering switched off, to show what the rest costs."""
    linkblog = load_linkblog(database)
    linkblog.render_markdown = lambda text: ""
    return phase_import(path, database, _)


def phase_export(path, database, _):
    linkblog = load_linkblog(database)
    started = time.perf_counter()
    lines = 0
    with open(path, "w", encoding="utf-8", newline="\n") as output:
        for line in linkblog.export_ndjson():
            output.write(line)
            lines += 1
    return {"lines": lines, "seconds": time.perf_counter() - started}


PHASES = {"baseline": phase_baseline, "import": phase_import, "reimport": phase_import,
          "import-without-markdown": phase_import_without_markdown, "export": phase_export}


def run_phase(name, path, database, limit=0):
    """Run one phase in a fresh Python process; its peak memory is that process's own."""
    result = subprocess.run([sys.executable, __file__, "--phase", name, str(path), str(database), str(limit)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def child(name, path, database, limit):
    result = PHASES[name](path, database, int(limit))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
        plain = folder / "plain.sqlite3"
        migrate(plain)
        results["import_without_markdown"] = run_phase("import-without-markdown", data, plain)
    report(results)


def rate(phase, count="posts"):
    return phase[count] / phase["seconds"]


def report(results):
    baseline = rate(results["baseline"])
    rows = [
        ("render() only (baseline)", results["baseline"]["posts"], results["baseline"]),
        ("import into empty SQLite", results["import"]["created"], results["import"]),
        ("re-import (all unchanged)", results["reimport"]["unchanged"], results["reimport"]),
        ("export NDJSON", results["export"]["lines"], results["export"]),
        ("import, Markdown off (diag.)", results["import_without_markdown"]["created"], results["import_without_markdown"]),
    ]
    print(f"\n{results['posts']:,} posts, {results['file_mb']} MB of NDJSON, {results['cpus']} CPUs, load {results['load_average']:.1f}")
    print(f"{'phase':28} {'items':>8} {'seconds':>8} {'per s':>8} {'x base':>7} {'peak RSS':>9}")
    for name, items, phase in rows:
        per_second = items / phase["seconds"]
        print(f"{name:28} {items:8,} {phase['seconds']:8.1f} {per_second:8,.0f} {per_second / baseline:7.2f} {phase['peak_rss_mb']:7.0f} MB")
    print(f"(a process that only loads linkblog peaks at {results['idle']['peak_rss_mb']:.0f} MB; "
          f"target {TARGET_POSTS_PER_SECOND:,} posts/s, import reached {rate(results['import'], 'created'):,.0f})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = RESULTS / f"import-{datetime.now():%Y%m%d-%H%M%S}.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {output.relative_to(ROOT)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--phase":
        child(*sys.argv[2:])
    else:
        main()
