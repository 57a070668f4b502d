"""
The benchmark: linkblog's pages against the same server's own hello-world ceiling.

    python bench/run.py --sizes 1000,10000,100000 --duration 10

For each size it builds (once, then reuses) a realistic SQLite data set with bench/dataset.py,
starts the production server exactly as README deploys it on a free 127.0.0.1 port, and loads
each URL with wrk for a fixed time: once with the page cache on and once with it off. Each
table row gives requests/s, p50 and p99 latency, the ratio to the ceiling (a hello-world view
of the same app on the same server, measured before the first page and again after each one: a
page is compared with the mean of the two ceilings around it), the SQL queries of a warm
request (bench/probe.py) and the peak resident memory of the busiest worker so far. It also
times a 100k-post import and the first launch of a fresh clone, checks the targets of issues 7 and 15,
and writes everything to bench/results/<timestamp>.json.

Numbers on a shared machine are noisy: compare ratios measured in the same run.
`python bench/run.py --markdown bench/results/<timestamp>.json [SIZE]` prints a saved run as the
Markdown table README shows.
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DATA = RESULTS / "data"

# Until README documents a production command, the one the lead gave for issue 6.
INTERIM_SERVER_COMMAND = "gunicorn 'linkblog:wsgi_application()' -w 2 -b 127.0.0.1:8000"
# The environment switch of the page cache (issue 6), when linkblog.py has it.
PAGE_CACHE_ENV = "LINKBLOG_PAGE_CACHE"
# Production sits behind a TLS-terminating proxy that says so in this header (and redirects plain HTTP).
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}
IMPORT_BENCH = BENCH / "import_bench.py"
CEILING = "ceiling (hello world)"


# --- Small helpers ------------------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url, timeout=30):
    """The status of one GET (redirects not followed), as production's proxy would send it; None if no answer."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path + ("?" + parts.query if parts.query else ""), headers=PROXY_HEADERS)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def wait_for(url, seconds, process=None):
    """Poll until `url` answers 200; False if it does not within `seconds` (or the process died)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        if http_status(url, timeout=5) == 200:
            return True
        time.sleep(0.1)
    return False


def stop(process):
    """Stop a process group we started: TERM, then KILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, 15)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


def readme_code_lines():
    """Every line inside README's fenced code blocks."""
    text = (ROOT / "README.md").read_text()
    return [line.strip() for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for line in block.splitlines()]


# --- The server, as README deploys it -------------------------------------------------------------


def server_command(port):
    """README's production command (serve-production, or gunicorn), listening on our free port."""
    documented = [line for line in readme_code_lines() if re.search(r"\bserve-production\b|(^|\s)gunicorn\s", line)]
    words = shlex.split(documented[0] if documented else INTERIM_SERVER_COMMAND)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words.pop(0)  # VAR=value prefixes: server_env() sets the environment
    address = f"127.0.0.1:{port}"
    if any(re.fullmatch(r"[\w.-]+:\d+", word) for word in words):
        words = [address if re.fullmatch(r"[\w.-]+:\d+", word) else word for word in words]
    else:
        words += [address] if "serve-production" in words else ["-b", address]
    return words, ("README" if documented else "interim (README documents no production command yet)")


def server_env(database_url, cache, cache_dir=None):
    env = dict(os.environ)
    env.update(
        LINKBLOG_CACHE_DIR=cache_dir or tempfile.gettempdir(),
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=database_url,
        LINKBLOG_BENCH="1",
    )
    if page_cache_switch():
        env[PAGE_CACHE_ENV] = "true" if cache else "false"
    return env


def page_cache_switch():
    """True once linkblog has the page cache switch (issue 6)."""
    return PAGE_CACHE_ENV in (ROOT / "linkblog.py").read_text()


def manage(env, *args):
    subprocess.run(["nanodjango", "manage", "linkblog.py", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Server:
    def __init__(self, env):
        self.port = free_port()
        self.env = env
        self.command, self.command_source = server_command(self.port)
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, start_new_session=True,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_for(self.base + "/bench/hello/", 60, self.process):
            self.log.seek(0)
            stop(self.process)
            sys.exit("bench: the server did not start:\n" + self.log.read().decode(errors="replace")[-3000:])
        return self

    def __exit__(self, *exc):
        stop(self.process)
        self.log.close()

    def worker_pids(self):
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                pids.append(int(stat.parent.name))
        return pids

    def peak_worker_rss_mb(self):
        """The highest VmHWM (peak resident set) among the workers, in MB."""
        peaks = [0]
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                peaks.append(int(match.group(1)) / 1024)
        return round(max(peaks), 1)


# --- Load: wrk ---------------------------------------------------------------------------------------


def to_ms(text):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def wrk(url, duration, connections):
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency",
         *[f"-H{name}: {value}" for name, value in PROXY_HEADERS.items()], url],
        capture_output=True, text=True, check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s))\s*$", output, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        # No latencies when no request finished within wrk's timeout.
        "p50_ms": round(to_ms(latency["50"]), 2) if "50" in latency else None,
        "p99_ms": round(to_ms(latency["99"]), 2) if "99" in latency else None,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "timeouts": int(errors.group(4)) if errors else 0,
    }


# --- One size: data set, probe, server, load ----------------------------------------------------------


def dataset_file(size, seed):
    """The SQLite file for `size` posts, built by bench/dataset.py once per version of the generator."""
    digest = hashlib.sha256((BENCH / "dataset.py").read_bytes()).hexdigest()[:10]
    path = DATA / f"posts-{size}-seed{seed}-{digest}.sqlite3"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        building = path.with_suffix(".building")
        for leftover in DATA.glob(building.name + "*"):
            leftover.unlink()
        print(f"building {size} posts into {path.relative_to(ROOT)} ...", flush=True)
        subprocess.run([sys.executable, str(BENCH / "dataset.py"), "--posts", str(size),
                        "--database", f"sqlite:///{building}", "--seed", str(seed)], check=True)
        subprocess.run(["sqlite3", str(building), "PRAGMA wal_checkpoint(TRUNCATE); VACUUM;"],
                       check=True, stdout=subprocess.DEVNULL)
        building.rename(path)
    return path


def probe(env):
    output = subprocess.run([sys.executable, str(BENCH / "probe.py"), "--database", env["DATABASE_URL"]],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output)


def measure_size(size, seed, cache, duration, connections):
    database_url = f"sqlite:///{dataset_file(size, seed)}"
    with tempfile.TemporaryDirectory(prefix="linkblog-bench-cache-") as cache_dir:
        return measure_server(size, server_env(database_url, cache, cache_dir), cache, duration, connections)


def measure_server(size, env, cache, duration, connections):
    """Each URL loaded for `duration` seconds after a warm-up. The ceiling is loaded first and again
    after every page, and each page is compared with the mean of the two ceilings around it: a VM's
    speed drifts by 10-20% within a run, and one ceiling for the whole run moved every ratio with it."""
    manage(env, "migrate", "--noinput")  # applies index migrations newer than the cached data set
    probed = probe(env)
    rows = {}
    with Server(env) as server:
        def load(path):
            wrk(server.base + path, 1, connections)  # warm-up, discarded
            return wrk(server.base + path, duration, connections)

        ceilings = []
        for name, url in probed["urls"].items():
            status = http_status(server.base + url["path"])
            row = {"path": url["path"], "status": status, "queries": url["queries"]}
            if status != 200:
                row["available"] = False
            else:
                row.update(available=True, **load(url["path"]))
                if name == "search":  # the latency of one reader alone, without queueing behind others
                    row["p50_ms_one_connection"] = wrk(server.base + url["path"], duration, 1)["p50_ms"]
                row["peak_worker_rss_mb"] = server.peak_worker_rss_mb()
                if name == CEILING:
                    ceilings.append(row["rps"])
                elif ceilings:
                    ceilings.append(load(probed["urls"][CEILING]["path"])["rps"])
                    row["ceiling_rps"] = round((ceilings[-2] + ceilings[-1]) / 2, 2)
            rows[name] = row
            print_row(name, row, flush=True)
        command = shlex.join(server.command)
        source = server.command_source
    if rows[CEILING].get("available"):
        rows[CEILING].update(ceiling_rps=rows[CEILING]["rps"], rps_samples=ceilings)
    for row in rows.values():
        if row.get("available") and row.get("ceiling_rps"):
            row["ratio_to_ceiling"] = round(row["rps"] / row["ceiling_rps"], 4)
    return {"posts": size, "cache": cache, "server_command": command, "server_command_source": source,
            "big_tag": probed["big_tag"], "big_tag_posts": probed["big_tag_posts"], "urls": rows}


# --- Printing -------------------------------------------------------------------------------------------

HEADER = f"{'URL':<24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ceiling':>8} {'queries':>8} {'RSS MB':>7}"


def print_row(name, row, flush=False):
    if not row.get("available"):
        print(f"{name:<24} not available (HTTP {row['status']} at {row['path']})", flush=flush)
        return
    ratio = f"{row['rps'] / row['ceiling_rps']:.1%}" if row.get("ceiling_rps") else ("100.0%" if name == CEILING else "-")
    warning = f"  ({row['non_2xx']} non-2xx!)" if row["non_2xx"] else ""
    p50, p99 = (f"{row[key]:.2f}" if row[key] is not None else "-" for key in ("p50_ms", "p99_ms"))
    print(f"{name:<24} {row['rps']:>8.0f} {p50:>8} {p99:>8} {ratio:>8} "
          f"{row['queries']:>8} {row['peak_worker_rss_mb']:>7}{warning}", flush=flush)


def print_heading(size, cache):
    mode = "on" if cache else "off"
    if not page_cache_switch():
        mode += " (no switch yet: on and off are the same server)"
    print(f"\n== {size:,} posts, page cache {mode}\n{HEADER}", flush=True)


# --- Extra timings: import and first launch ----------------------------------------------------------------


def time_import(posts):
    """bench/import_bench.py (issue 5's own benchmark) at `posts` posts: its import phase's posts/s."""
    if not IMPORT_BENCH.exists():
        return {"available": False, "reason": "bench/import_bench.py is not on this branch yet"}
    before = set(RESULTS.glob("import-*.json"))
    result = subprocess.run([sys.executable, str(IMPORT_BENCH), "--posts", str(posts)], cwd=ROOT,
                            capture_output=True, text=True)
    written = sorted(set(RESULTS.glob("import-*.json")) - before)
    if result.returncode != 0 or not written:
        return {"available": False, "reason": "import_bench.py failed: " + result.stderr.strip()[-500:]}
    measured = json.loads(written[-1].read_text())
    imported = measured["import"]
    return {"available": True, "posts": imported["created"], "seconds": round(imported["seconds"], 1),
            "posts_per_s": round(imported["created"] / imported["seconds"]),
            "peak_rss_mb": round(imported["peak_rss_mb"]), "report": str(written[-1].relative_to(ROOT)),
            "table": result.stdout.strip()}


def readme_run_command(port):
    """README's first `... linkblog.py` command that serves the site (not an install), on our port."""
    for line in readme_code_lines():
        for part in line.split("&&"):
            words = shlex.split(part.strip())
            if "linkblog.py" in words and ("run" in words or "serve" in words):
                return words + [f"127.0.0.1:{port}"] if not any(":" in word for word in words) else words
    return None


def time_first_launch():
    """From `git clone` of this commit to the home page answering 200, with README's run command."""
    with tempfile.TemporaryDirectory(prefix="linkblog-clone-") as folder:
        clone = Path(folder) / "linkblog"
        port = free_port()
        command = readme_run_command(port)
        if command is None:
            return {"available": False, "reason": "README has no run command"}
        started = time.perf_counter()
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_URL"))}
        env["DJANGO_SUPERUSER_PASSWORD"] = secrets.token_urlsafe(16)
        process = subprocess.Popen(command, cwd=clone, env=env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            answered = wait_for(f"http://127.0.0.1:{port}/", 180, process)
            seconds = time.perf_counter() - started
        finally:
            stop(process)
        return {"available": answered, "command": shlex.join(command), "seconds": round(seconds, 1),
                "note": "dependencies already installed; the time excludes `pip install .`"}


# --- Targets (issue 7) ------------------------------------------------------------------------------------------


# Issue 15: the share of the ceiling each page reaches uncached.
UNCACHED_TARGETS = {"home": 0.10, "tag page 1": 0.10, "tag page last": 0.10, "feed": 0.10, "api items": 0.10,
                    "combined tags": 0.08, "search": 0.08, "search, common word": 0.08, "permalink": 0.25}


def check_targets(runs):
    """Issues 7 and 15's targets, each as (description, met: True/False/None, detail)."""
    largest, smallest = max(run["posts"] for run in runs), min(run["posts"] for run in runs)
    pick = {(run["posts"], run["cache"]): run["urls"] for run in runs}
    on = pick.get((largest, True), {})
    results = []

    def ratio_target(label, rows, name, minimum):
        row = rows.get(name, {})
        ratio = row.get("ratio_to_ceiling")
        results.append((f"{label}: {name} >= {minimum:.0%} of ceiling", None if ratio is None else ratio >= minimum,
                        "not available" if ratio is None else f"{ratio:.1%}"))

    for name in ("home", "tag page 1", "feed"):  # issue 7
        ratio_target("cache on", on, name, 0.5)
    # Issue 15: uncached pages against the ceiling, at every size measured.
    for size in sorted({run["posts"] for run in runs}):
        off = pick.get((size, False), {})
        for name, minimum in UNCACHED_TARGETS.items():
            ratio_target(f"cache off, {size:,} posts", off, name, minimum)
    rss = max((row.get("peak_worker_rss_mb", 0) for run in runs for row in run["urls"].values()), default=0)
    results.append(("worker peak RSS < 120 MB", rss < 120, f"{rss} MB"))
    if largest != smallest:
        small, big = pick.get((smallest, False), {}), pick.get((largest, False), {})
        grew = {name: (small[name]["queries"], row["queries"]) for name, row in big.items()
                if name in small and row.get("queries") is not None and row["queries"] > small[name]["queries"]}
        results.append((f"SQL queries per page at {largest:,} posts no more than at {smallest:,}", not grew,
                        ", ".join(f"{name} {a}->{b}" for name, (a, b) in grew.items()) or "constant"))
        # Time per request relative to the same run's ceiling, so that a busier machine in one
        # run does not read as growth.
        for cache in (True, False):
            small, big = pick.get((smallest, cache), {}), pick.get((largest, cache), {})
            for name, row in big.items():
                before = small.get(name, {}).get("ratio_to_ceiling")
                if name == CEILING or not row.get("ratio_to_ceiling") or not before:
                    continue
                growth = before / row["ratio_to_ceiling"]
                results.append((f"flat growth, cache {'on' if cache else 'off'}: {name} at {largest:,} posts "
                                f"within 1.5x of {smallest:,}", growth <= 1.5, f"{growth:.2f}x"))
    return results


def print_targets(results):
    print("\n== Targets (issues 7 and 15)")
    for description, met, detail in results:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[met]
        print(f"  {verdict:<7} {description}: {detail}")


# --- Main ---------------------------------------------------------------------------------------------------------


def markdown_table(report, size):
    """The README table for one size of a saved report: cache off and on side by side."""
    runs = {run["cache"]: run["urls"] for run in report["runs"] if run["posts"] == size}
    modes = [cache for cache in (False, True) if cache in runs]
    heading = "| URL | " + " | ".join(
        f"cache {'on' if cache else 'off'}: req/s | p50 / p99 ms | of ceiling" for cache in modes)
    heading += " | SQL queries" + (" (off / on)" if len(modes) > 1 else "") + " |"
    lines = [heading, "|" + " --- |" * (2 + 3 * len(modes))]
    for name, first in runs[modes[0]].items():
        cells = []
        for cache in modes:
            row = runs[cache][name]
            if not row.get("available"):
                cells += ["not available", "", ""]
                continue
            latency = f"{row['p50_ms']} / {row['p99_ms']}" if row["p50_ms"] is not None else "-"
            cells += [f"{row['rps']:,.0f}", latency, f"{row.get('ratio_to_ceiling', 0):.1%}"]
        queries = " / ".join(str(runs[cache][name]["queries"]) for cache in modes)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {queries} |")
    return "\n".join(lines)


def main(argv=None):
    if argv is None and sys.argv[1:2] == ["--markdown"]:
        report = json.loads(Path(sys.argv[2]).read_text())
        size = int(sys.argv[3]) if len(sys.argv) > 3 else max(run["posts"] for run in report["runs"])
        print(markdown_table(report, size))
        return
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated post counts")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per URL")
    parser.add_argument("--connections", type=int, default=4, help="concurrent wrk connections")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", default="on,off", help="page cache modes to measure: on,off / on / off")
    parser.add_argument("--skip-extras", action="store_true", help="skip the import and first-launch timings")
    args = parser.parse_args(argv)
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error("--sizes must be comma-separated integers, e.g. 1000,10000")
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing (apt-get install wrk)")

    started = datetime.now(timezone.utc)
    manage(server_env("sqlite:///" + str(DATA / "unused.sqlite3"), True), "collectstatic", "--noinput")
    runs = []
    for size in sizes:
        for cache in [mode == "on" for mode in args.cache.split(",")]:
            print_heading(size, cache)
            runs.append(measure_size(size, args.seed, cache, args.duration, args.connections))
    report = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip(),
        "settings": vars(args) | {"page_cache_switch": page_cache_switch()},
        "runs": runs,
    }
    if not args.skip_extras:
        report["import"] = time_import(100_000)
        print(f"\n== Import of 100,000 posts (bench/import_bench.py): "
              f"{summary(report['import'], 'posts_per_s', 'posts/s')}")
        report["first_launch"] = time_first_launch()
        print(f"== First launch of a fresh clone: {summary(report['first_launch'], 'seconds', 's')}")
    report["targets"] = [dict(zip(("target", "met", "measured"), result)) for result in check_targets(runs)]
    print_targets(check_targets(runs))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


def summary(result, key, unit):
    if not result.get("available"):
        return "not available (" + result.get("reason", result.get("output", "failed")) + ")"
    return f"{result[key]} {unit} ({result.get('command', '')})".replace(" ()", "")


def machine():
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    return {"cpus": os.cpu_count(), "cpu": cpu.group(1) if cpu else "", "python": sys.version.split()[0],
            "sqlite": subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout.split()[0]}


if __name__ == "__main__":
    main()
