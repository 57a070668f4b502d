"""The link checking and archive engine (issue 16), against local servers: nothing leaves 127.0.0.1."""

import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote, urlsplit

import pytest

from blogworks import archive
from blogworks.linkcheck import (
    Hop,
    LinkChecker,
    LinkResult,
    classify_history,
    extract_links,
    has_parking_markers,
    is_parking_host,
    quote_url,
)
from link_servers import DEAD_HOST_URL, Archive, Site, Tracker, closed_port_url

USER_AGENT = "linkblog link checker (+https://example.com/)"
DAY0 = datetime(2024, 3, 1, 4, 0, tzinfo=timezone.utc)


def checker(**options):
    """A checker with test-sized timings: short timeout, tiny per-host delay."""
    options = {"timeout": 2.0, "host_delay": 0.01, **options}
    return LinkChecker(USER_AGENT, **options)


# --- extract_links ------------------------------------------------------------------------------


def test_extract_links_finds_markdown_autolinks_and_html_links_in_order():
    text = """Intro [a page](https://a.example/one "Title") and ![img](http://b.example/pic.png).
Wikipedia: [Foo](https://en.wikipedia.org/wiki/Foo_(bar)), autolink <https://c.example/x?y=1>,
<a class="x" href="https://d.example/?a=1&amp;b=2">d</a> <a href='https://e.example/'>e</a>
<a href=https://f.example/unquoted>f</a> [spaced](<https://g.example/with space>)

[ref]: https://h.example/ref
"""
    assert extract_links(text) == [
        "https://a.example/one",
        "http://b.example/pic.png",
        "https://en.wikipedia.org/wiki/Foo_(bar)",
        "https://c.example/x?y=1",
        "https://d.example/?a=1&b=2",
        "https://e.example/",
        "https://f.example/unquoted",
        "https://g.example/with space",
        "https://h.example/ref",
    ]


def test_extract_links_deduplicates_and_ignores_what_is_not_an_http_link():
    text = """[one](https://a.example/) [again](https://a.example/) <a href="https://a.example/">3</a>
[mail](mailto:me@example.com) [relative](/tags/x) [ftp](ftp://files.example/) [js](javascript:alert(1))
A bare URL in text is not a link: https://bare.example/ and neither is `code`."""
    assert extract_links(text) == ["https://a.example/"]
    assert extract_links("") == [] and extract_links(None) == []


# --- quote_url ----------------------------------------------------------------------------------


def test_quote_url_quotes_as_a_browser_does():
    assert quote_url(" HTTP://Example.COM:80/a b/ü?q=x y&z=%20#frag\n") == "http://example.com/a%20b/%C3%BC?q=x%20y&z=%20"
    assert quote_url("https://bücher.example/") == "https://xn--bcher-kva.example/"
    assert quote_url("https://example.com:8443") == "https://example.com:8443/"
    assert quote_url("http://[::1]:8000/x") == "http://[::1]:8000/x"


@pytest.mark.parametrize("bad", ["ftp://example.com/", "http:///nohost", "http://example.com:99999/",
                                 "http://[::1", "javascript:alert(1)", "", "http://" + "a" * 70 + "é.example/"])
def test_quote_url_refuses_what_cannot_be_requested(bad):
    with pytest.raises(ValueError):
        quote_url(bad)


# --- Checking one URL ---------------------------------------------------------------------------


def test_a_live_page_is_ok_with_one_head_request_naming_the_blog(site):
    result = checker().check_one(f"{site.url}/live")
    assert (result.outcome, result.status, result.final_url) == ("ok", 200, f"{site.url}/live")
    assert result.redirects == () and not result.permanent_redirect and result.error == ""
    assert [(seen.method, seen.path) for seen in site.requests] == [("HEAD", "/live")]
    assert site.requests[0].headers["User-Agent"] == USER_AGENT


@pytest.mark.parametrize("path", ["/head-refused", "/head-dropped"])
def test_get_is_used_when_head_is_refused_or_dropped(site, path):
    result = checker().check_one(site.url + path)
    assert (result.outcome, result.status) == ("ok", 200)
    assert [seen.method for seen in site.requests] == ["HEAD", "GET"]


@pytest.mark.parametrize("path, status", [("/not-found", 404), ("/gone", 410)])
def test_404_and_410_are_not_found(site, path, status):
    result = checker().check_one(site.url + path)
    assert (result.outcome, result.status) == ("not_found", status)


def test_a_flaky_server_is_a_server_error_then_ok(site):
    first, second = checker().check_one(f"{site.url}/flaky"), checker().check_one(f"{site.url}/flaky")
    assert (first.outcome, first.status) == ("server_error", 503)
    assert (second.outcome, second.status) == ("ok", 200)


def test_a_page_slower_than_the_timeout_is_a_timeout(site):
    result = checker(timeout=0.3).check_one(f"{site.url}/slow")
    assert (result.outcome, result.status) == ("timeout", None)
    assert "timed out" in result.error


def test_a_redirect_chain_is_followed_and_recorded(site):
    result = checker().check_one(f"{site.url}/chain/start")
    assert (result.outcome, result.status, result.final_url) == ("redirected", 200, f"{site.url}/chain/end")
    assert result.redirects == (Hop(302, f"{site.url}/chain/start"), Hop(301, f"{site.url}/chain/middle"))
    assert not result.permanent_redirect  # one temporary hop: the author should keep the URL


@pytest.mark.parametrize("path", ["/moved", "/moved-twice"])
def test_a_permanent_move_is_marked_permanent(site, path):
    result = checker().check_one(site.url + path)
    assert (result.outcome, result.final_url, result.permanent_redirect) == ("redirected", f"{site.url}/new-home", True)


def test_a_redirect_loop_stops_with_a_connection_error(site):
    result = checker().check_one(f"{site.url}/loop/a")
    assert result.outcome == "connection_error" and "loop" in result.error
    assert site.paths() == ["/loop/a", "/loop/b"]


def test_too_many_redirects_stop(site):
    result = checker(max_redirects=1).check_one(f"{site.url}/chain/start")
    assert result.outcome == "connection_error" and "more than 1 redirects" in result.error
    assert len(site.requests) == 1


def test_a_redirect_to_a_non_http_scheme_is_not_followed(site):
    result = checker().check_one(f"{site.url}/to-ftp")
    assert (result.outcome, result.status, result.final_url) == ("connection_error", 302, "ftp://files.example/file.txt")
    assert "non-http(s)" in result.error
    assert site.paths() == ["/to-ftp"]


def test_dns_failure_is_a_dns_error():
    for url in (DEAD_HOST_URL, "http://bücher.invalid/ü"):
        result = checker().check_one(url)
        assert (result.outcome, result.status) == ("dns_error", None), result


def test_a_refused_connection_is_a_connection_error():
    result = checker().check_one(closed_port_url("/x"))
    assert (result.outcome, result.status) == ("connection_error", None)


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999/", "http:///x", "javascript:alert(1)",
                                 "", "   ", "http://" + "a" * 70 + ".example/"])
def test_urls_that_cannot_be_requested_are_errors_not_crashes(url):
    result = checker().check_one(url)
    assert (result.url, result.outcome) == (url, "connection_error")
    assert result.error


def test_a_run_with_unrequestable_urls_checks_the_rest(site):
    urls = ["http://[::1", "http://127.0.0.1:99999/", "", f"{site.url}/live"]
    results = checker().check(urls)
    assert [(result.url, result.outcome) for result in results] == [
        ("http://[::1", "connection_error"), ("http://127.0.0.1:99999/", "connection_error"),
        ("", "connection_error"), (f"{site.url}/live", "ok")]


def test_urls_with_spaces_unicode_and_300_characters_are_quoted_as_a_browser_would(site):
    paths = ["/echo/a page with spaces", "/echo/ünïcödé/日本語", "/echo/" + "long-segment " * 25 + "end?q=a b&r=ü"]
    assert len(site.url + paths[2]) > 300
    results = checker().check([site.url + path for path in paths])
    assert [result.outcome for result in results] == ["ok"] * 3
    seen = site.paths()
    assert all(" " not in path and path.isascii() for path in seen)
    assert sorted(unquote(path) for path in seen) == sorted(paths)


# --- Parked domains -----------------------------------------------------------------------------


def test_a_redirect_to_another_host_serving_a_parking_page_is_parked(site, other_host):
    result = checker().check_one(f"{site.url}/redirect?to={other_host.url}/parked")
    assert (result.outcome, result.final_url) == ("parked", f"{other_host.url}/parked")
    # HEAD said 200; the body was read with one GET to find the parking markers.
    assert [(seen.method, seen.path) for seen in other_host.requests] == [("HEAD", "/parked"), ("GET", "/parked")]


def test_a_redirect_to_a_known_parking_host_is_parked_without_reading_it(site, other_host):
    result = checker(parking_hosts=frozenset({"localhost"})).check_one(f"{site.url}/redirect?to={other_host.url}/live")
    assert result.outcome == "parked"
    assert other_host.paths("GET") == []


def test_a_live_page_on_another_host_is_not_parked(site, other_host):
    result = checker().check_one(f"{site.url}/redirect?to={other_host.url}/live")
    assert (result.outcome, result.final_url) == ("redirected", f"{other_host.url}/live")


def test_a_domain_parked_in_place_is_seen_when_bodies_are_read(site):
    assert checker().check_one(f"{site.url}/parked").outcome == "ok"  # HEAD only: no body to read
    assert checker(always_get_body=True).check_one(f"{site.url}/parked").outcome == "parked"
    assert checker(always_get_body=True).check_one(f"{site.url}/live").outcome == "ok"


def test_parking_hosts_and_markers():
    assert is_parking_host("sedo.com") and is_parking_host("www.SEDOPARKING.com") and is_parking_host("x.dan.com.")
    assert not is_parking_host("notsedo.com") and not is_parking_host("example.com") and not is_parking_host(None)
    assert has_parking_markers(b"<h1>This domain\n   is for SALE</h1>")
    assert has_parking_markers(b'<script src="https://www.sedoparking.com/js/x.js"></script>')
    assert not has_parking_markers(b"<p>An ordinary page about domains.</p>")


def test_a_never_ending_body_is_read_only_up_to_the_limit(site):
    results = []
    thread = threading.Thread(target=lambda: results.append(
        checker(always_get_body=True, max_body_bytes=50_000).check_one(f"{site.url}/endless")))
    thread.start()
    thread.join(60)  # generous: a bounded read takes milliseconds, an unbounded one never ends
    site.stopping.set()
    assert not thread.is_alive()
    assert results[0].outcome == "ok"


# --- A run: once per URL, politeness, progress, resuming ----------------------------------------


def test_each_url_is_checked_once_per_run_even_when_listed_many_times(site):
    urls = [f"{site.url}/echo/a b", f"{site.url}/live", f"{site.url}/echo/a b", f"{site.url}/echo/a%20b",
            f"{site.url}/live", f"{site.url}/echo/a b"]
    results = checker().check(urls)
    assert [result.url for result in results] == [f"{site.url}/echo/a b", f"{site.url}/live", f"{site.url}/echo/a%20b"]
    assert all(result.outcome == "ok" for result in results)
    assert sorted(site.paths()) == ["/echo/a%20b", "/live"]


def test_requests_to_one_host_respect_the_concurrency_limit_and_spacing():
    # Each request is held longer than two delays, so without the limit three would overlap.
    delay, count = 0.2, 6
    site = Site(hold_seconds=0.6).start()
    try:
        started = time.monotonic()
        results = checker(per_host=2, host_delay=delay, max_workers=8).check(
            [f"{site.url}/polite/{n}" for n in range(count)])
    finally:
        site.stop()
    assert [result.outcome for result in results] == ["ok"] * count
    assert site.tracker.max_active <= 2
    starts = sorted(seen.started for seen in site.requests)
    # The gate books starts `delay` apart, so the last cannot come before (count - 1) delays.
    assert starts[-1] - started >= (count - 1) * delay
    # Server-side gaps are the booked ones give or take scheduling noise: allow a lot of it.
    assert min(later - earlier for earlier, later in zip(starts, starts[1:])) >= delay / 3


def test_the_global_limit_holds_across_hosts():
    tracker = Tracker()
    sites = [Site(tracker=tracker, hold_seconds=0.2).start() for _ in range(3)]
    try:
        urls = [f"{site.url}/polite/{n}" for site in sites for n in range(4)]
        results = checker(per_host=2, max_workers=3).check(urls)
    finally:
        for site in sites:
            site.stop()
    assert [result.outcome for result in results] == ["ok"] * len(urls)
    assert tracker.max_active <= 3
    assert all(len(site.requests) == 4 for site in sites)


def test_results_and_progress_are_reported_as_checks_finish(site):
    urls = [f"{site.url}/live", f"{site.url}/not-found", f"{site.url}/live"]
    seen_results, progress = [], []
    clock = lambda: DAY0  # noqa: E731
    results = checker(clock=clock).check(urls, on_result=seen_results.append,
                                         on_progress=lambda done, total: progress.append((done, total)))
    assert sorted(result.url for result in seen_results) == sorted(result.url for result in results)
    assert progress == [(0, 2), (1, 2), (2, 2)]
    assert {result.checked_at for result in results} == {DAY0}


def test_an_interrupted_run_resumes_with_skip(site):
    urls = [f"{site.url}/echo/{n}" for n in range(6)]
    stored = []

    def store_then_ctrl_c(result):
        stored.append(result)
        if len(stored) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checker(max_workers=1).check(urls, on_result=store_then_ctrl_c)
    assert len(stored) == 2
    assert len(site.requests) <= 3  # the rest were cancelled (one may have been in flight)

    progress = []
    resumed = checker(max_workers=1).check(urls, skip={result.url for result in stored},
                                           on_progress=lambda done, total: progress.append((done, total)))
    assert sorted(result.url for result in resumed + stored) == sorted(urls)
    assert progress[0] == (2, 6) and progress[-1] == (6, 6)
    paths = site.paths()
    for result in stored:
        assert paths.count(urlsplit(result.url).path) == 1  # not checked again


def test_a_result_survives_a_round_trip_through_json_data():
    result = LinkResult("https://a.example/x", 200, "redirected", "https://b.example/", True, DAY0, "",
                        (Hop(301, "https://a.example/x"),))
    assert LinkResult.from_dict(result.as_dict()) == result


# --- classify_history ---------------------------------------------------------------------------


def run(outcome, day, *, permanent=False, final=None, url="https://a.example/"):
    status = {"ok": 200, "redirected": 200, "not_found": 404, "server_error": 503, "parked": 200}.get(outcome)
    return LinkResult(url, status, outcome, final or url, permanent, DAY0 + timedelta(days=day))


def classify(*results, now_day=365, **options):
    return classify_history(list(results), DAY0 + timedelta(days=now_day), **options)


def test_no_history_or_successes_are_alive():
    assert classify() == "alive"
    assert classify(run("ok", 0), run("ok", 7)) == "alive"
    assert classify(run("redirected", 0, final="https://a.example/elsewhere")) == "alive"  # temporary


def test_death_needs_enough_definitive_failures_spanning_enough_days():
    assert classify(run("not_found", 0)) == "suspect"
    assert classify(run("not_found", 0), run("not_found", 4), run("not_found", 8)) == "dead"
    assert classify(run("not_found", 0), run("not_found", 1), run("not_found", 2)) == "suspect"  # too close
    assert classify(run("not_found", 0), run("not_found", 30)) == "suspect"  # too few
    assert classify(run("dns_error", 0), run("parked", 4), run("not_found", 7)) == "dead"  # exactly 7 days


def test_a_success_resets_the_count_and_revives():
    failures = [run("not_found", day) for day in (0, 4, 8)]
    assert classify(*failures, run("ok", 9)) == "alive"
    assert classify(*failures, run("ok", 9), run("not_found", 10), run("not_found", 20)) == "suspect"


def test_flaky_servers_and_timeouts_are_never_death():
    flaky = [run(outcome, day) for day, outcome in
             enumerate(["server_error", "timeout", "connection_error"] * 10)]
    assert classify(*flaky) == "suspect"
    # ...and they neither count towards death nor hide the definitive failures around them.
    mixed = [run("not_found", 0), run("timeout", 3), run("not_found", 5), run("server_error", 6), run("dns_error", 9)]
    assert classify(*mixed) == "dead"
    assert classify(*mixed, run("timeout", 12)) == "dead"


def test_moved_when_the_latest_result_is_a_working_permanent_redirect():
    moved = run("redirected", 5, permanent=True, final="https://b.example/new")
    assert classify(run("ok", 0), moved) == "moved"
    assert classify(run("not_found", 0), run("not_found", 4), run("not_found", 8), moved) == "moved"
    assert classify(moved, run("ok", 6)) == "alive"
    assert classify(run("redirected", 0, permanent=True)) == "alive"  # back to itself: not a move


def test_classification_is_as_of_now_and_thresholds_are_parameters():
    failures = [run("not_found", day) for day in (0, 4, 8)]
    assert classify(*failures, now_day=5) == "suspect"  # the day-8 run has not happened yet
    assert classify(*failures, now_day=8) == "dead"
    assert classify(*failures[:2], min_failures=2, min_span=timedelta(days=4)) == "dead"
    assert classify(*failures, min_span=timedelta(days=9)) == "suspect"


def test_runs_days_apart_mark_exactly_the_dead_links(site):
    urls = {name: f"{site.url}{path}" for name, path in
            [("live", "/live"), ("flaky", "/flaky"), ("moved", "/moved"), ("dead", "/not-found"), ("slow", "/slow")]}
    urls["gone-host"] = DEAD_HOST_URL
    history = {url: [] for url in urls.values()}
    for day in (0, 4, 8):
        run_checker = checker(timeout=0.3, clock=lambda day=day: DAY0 + timedelta(days=day))
        for result in run_checker.check(list(urls.values())):
            history[result.url].append(result)
        states = {name: classify_history(history[url], DAY0 + timedelta(days=day)) for name, url in urls.items()}
        if day < 8:
            assert "dead" not in states.values()
    # /flaky answered 503, 200, 503: failing today, but a 5xx is never death.
    assert states == {"live": "alive", "flaky": "suspect", "moved": "moved", "dead": "dead",
                      "gone-host": "dead", "slow": "suspect"}


# --- The web archive ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["content-location", "redirect"])
def test_save_returns_the_absolute_snapshot_url(mode):
    stand_in = Archive(mode=mode).start()
    try:
        snapshot = archive.save("https://example.com/a b?x=1&y=2", base_url=stand_in.url, timeout=5)
    finally:
        stand_in.stop()
    assert snapshot == f"{stand_in.url}/web/{Archive.TIMESTAMP}/https://example.com/a%20b?x=1&y=2"
    assert stand_in.saved == ["https://example.com/a b?x=1&y=2"]
    assert stand_in.paths() == ["/save/https://example.com/a%20b?x=1&y=2"]


@pytest.mark.parametrize("mode, status, words", [("rate-limited", 429, "rate limiting"),
                                                 ("queued", 200, "look it up later")])
def test_save_raises_a_clear_error_when_the_archive_does_not_give_a_snapshot(mode, status, words):
    stand_in = Archive(mode=mode).start()
    try:
        with pytest.raises(archive.ArchiveError, match=words) as raised:
            archive.save("https://example.com/", base_url=stand_in.url, timeout=5)
    finally:
        stand_in.stop()
    assert raised.value.status == status


def test_save_fails_cleanly_when_the_archive_is_slow_or_unreachable():
    stand_in = Archive(mode="slow").start()
    try:
        with pytest.raises(archive.ArchiveError, match="timed out"):
            archive.save("https://example.com/", base_url=stand_in.url, timeout=0.3)
    finally:
        stand_in.stop()
    with pytest.raises(archive.ArchiveError, match="ConnectionRefused"):
        archive.save("https://example.com/", base_url=closed_port_url("").rstrip("/"), timeout=2)
    with pytest.raises(archive.ArchiveError, match="cannot archive"):
        archive.save("mailto:me@example.com", base_url="http://127.0.0.1:9")


def test_lookup_finds_the_closest_snapshot_or_none(web_archive):
    url = "https://example.com/page?a=1&b=two words"
    assert archive.lookup(url, base_url=web_archive.url) is None
    web_archive.snapshots[url] = "20230505050505"
    assert archive.lookup(url, base_url=web_archive.url) == \
        f"http://127.0.0.1:{web_archive.port}/web/20230505050505/{url}"
    with pytest.raises(archive.ArchiveError, match="HTTP 404"):
        archive.lookup(url, base_url=web_archive.url + "/elsewhere")
    with pytest.raises(archive.ArchiveError):
        archive.lookup(url, base_url=closed_port_url("").rstrip("/"))


def test_lookup_sends_readers_to_https_on_the_archive_host():
    assert archive._same_scheme_as_base("http://web.archive.org/web/2024/https://a.example/",
                                        "https://web.archive.org") == "https://web.archive.org/web/2024/https://a.example/"
    assert archive._same_scheme_as_base("http://mirror.example/web/2024/x", "https://web.archive.org") == \
        "http://mirror.example/web/2024/x"
