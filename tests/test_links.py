"""Links that outlive the web (issue 16), end to end: a seeded blog whose links are live, flaky, moved
and dead on local servers; `python linkblog.py check-links` run days apart; what readers, the author's
admin page and the API then show. Nothing leaves 127.0.0.1.

The runs' clock: each run really checks the local servers; the hidden `--now` option stamps its
results and judges the history as of that moment, as if the runs had happened days apart (the
engine's `LinkChecker(clock=...)` and `classify_history(now=...)` are built for this)."""

import io
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

import linkblog
from factories import at
from link_servers import DEAD_HOST_URL
from linkblog import Blogmark, Entry, Link, LinkCheck, LinkCheckRun, PostLink, Quotation

pytestmark = pytest.mark.django_db

DAY0 = datetime(2024, 3, 1, 4, 0, tzinfo=timezone.utc)
ARCHIVE = "https://archive.test/web/20240101000000/"
ATOM = "{http://www.w3.org/2005/Atom}"


def check_links(now, *options):
    """One run of `python linkblog.py check-links` (in this process, on the test database) as of `now`."""
    assert linkblog.check_links_command(["--now", now.isoformat(), "--delay", "0", "--timeout", "2", *options]) == 0


def states():
    return dict(Link.objects.held().values_list("url", "state"))


def urls_in(state):
    return {url for url, found in states().items() if found == state}


@pytest.fixture
def blog(make, site, other_host, settings):
    """A blog holding live, flaky, moved and dead links, in every place a post holds links."""
    settings.LINKBLOG_ARCHIVE_LINKS = False  # archiving is tested through the real worker below
    long_live = f"{site.url}/echo/{'a' * 320}?q=1"
    long_dead = f"{site.url}/removed/{'b' * 300}/with space.html"
    urls = {
        "live": f"{site.url}/live",
        "flaky": f"{site.url}/flaky",
        "moved": f"{site.url}/moved",
        "not_found": f"{site.url}/not-found",
        "gone": f"{site.url}/gone",
        "parked": f"{site.url}/redirect?to={other_host.url}/parked",
        "dns": DEAD_HOST_URL,
        "spaces": f"{site.url}/echo/with space",
        "long_live": long_live,
        "long_dead": long_dead,
    }
    posts = {
        "live": make.blogmark("Live and flaky", link_url=urls["live"], via_url=urls["flaky"], created=at(2024, 1, 1)),
        "dead": make.blogmark("Dead", link_url=urls["not_found"], commentary=f"Also [this]({urls['gone']}) and [that]({urls['live']}).",
                              created=at(2024, 1, 2)),
        "moved": make.quotation(source_url=urls["moved"], created=at(2024, 1, 3)),
        "entry": make.entry("Many links", created=at(2024, 1, 4), body=(
            f"[gone host]({urls['dns']}), [parked]({urls['parked']}), [spaces](<{urls['spaces']}>),\n"
            f"[long]({urls['long_live']}) and [long and dead](<{urls['long_dead']}>).")),
    }
    return urls, posts


def dead_urls(urls):
    return {urls[name] for name in ("not_found", "gone", "parked", "dns", "long_dead")}


def three_runs_days_apart():
    check_links(DAY0)
    check_links(DAY0 + timedelta(days=4))
    check_links(DAY0 + timedelta(days=8))


# --- Keeping the post → link rows in step ----------------------------------------------------------


def test_every_link_a_post_holds_is_one_row_however_many_posts_hold_it(blog):
    urls, posts = blog
    assert set(states()) == set(urls.values())
    assert Link.objects.filter(url=urls["live"]).count() == 1
    assert PostLink.objects.filter(link__url=urls["live"]).count() == 2
    assert [link.url for link in Blogmark.objects.get(pk=posts["dead"].pk).known_links] == [
        urls["not_found"], urls["gone"], urls["live"]]


def test_editing_or_deleting_a_post_keeps_its_link_rows_in_step(blog, make):
    urls, posts = blog
    post = posts["dead"]
    post.link_url, post.commentary = "https://new.example/", ""
    post.save()
    assert [link.url for link in Blogmark.objects.get(pk=post.pk).known_links] == ["https://new.example/"]
    assert urls["not_found"] not in states() and urls["gone"] not in states()
    posts["entry"].delete()
    assert urls["dns"] not in states() and urls["long_dead"] not in states()
    assert not PostLink.objects.filter(kind="entry", post_id=posts["entry"].pk).exists()


def test_an_import_brings_its_posts_links_in_step_in_one_pass(site, django_assert_max_num_queries):
    lines = [f'{{"type": "blogmark", "link_url": "{site.url}/echo/{number}", "link_title": "Link {number}", '
             f'"commentary": "See [a]({site.url}/echo/shared)", "created": "2024-01-01T12:00:00Z"}}' for number in range(300)]
    report = linkblog.import_posts(io.BytesIO("\n".join(lines).encode()), "ndjson")
    assert not report.failed
    assert Link.objects.held().count() == 301
    assert PostLink.objects.filter(link__url=f"{site.url}/echo/shared").count() == 300
    PostLink.objects.all().delete()
    with django_assert_max_num_queries(15):  # bulk: not a query or two per post
        linkblog.refresh_post_links()
    assert PostLink.objects.count() == 600


# --- Checking, runs days apart ---------------------------------------------------------------------


def test_runs_days_apart_mark_exactly_the_dead_links_dead(blog, site):
    urls, _ = blog
    check_links(DAY0)
    check_links(DAY0 + timedelta(days=4))
    assert urls_in("dead") == set()  # two bad days are not death
    check_links(DAY0 + timedelta(days=8))
    assert urls_in("dead") == dead_urls(urls)
    assert urls_in("moved") == {urls["moved"]}
    assert Link.objects.get(url=urls["moved"]).final_url == f"{site.url}/new-home"
    assert urls_in("suspect") == {urls["flaky"]}  # 503, 200, 503: failing now, never dead
    assert urls_in("alive") == {urls[name] for name in ("live", "spaces", "long_live")}
    # Each distinct URL once per run, however many posts hold it.
    assert site.paths("HEAD").count("/live") == 3
    assert LinkCheck.objects.filter(link__url=urls["live"]).count() == 3


def test_failures_within_a_few_days_are_not_death(blog):
    urls, _ = blog
    for hours in (0, 24, 48, 72):
        check_links(DAY0 + timedelta(hours=hours))
    assert urls_in("dead") == set()
    assert urls_in("suspect") >= dead_urls(urls)


def test_an_interrupted_run_carries_on_where_it_stopped(blog, site, monkeypatch):
    urls, _ = blog
    real_store, stored = linkblog.linkstore.store_result, []

    def store_then_stop(*args):
        real_store(*args)
        stored.append(args[-1].url)
        if len(stored) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(linkblog.linkstore, "store_result", store_then_stop)
    assert linkblog.check_links_command(["--now", DAY0.isoformat(), "--delay", "0", "--timeout", "2"]) == 1
    monkeypatch.setattr(linkblog.linkstore, "store_result", real_store)
    check_links(DAY0 + timedelta(minutes=5))
    run = LinkCheckRun.objects.get()  # the same run, resumed and finished
    assert run.finished is not None
    assert LinkCheck.objects.filter(run=run).count() == len(urls)
    for url in stored:  # what the first attempt checked was not asked again
        assert LinkCheck.objects.filter(link__url=url).count() == 1


def test_the_command_says_what_it_found_and_refuses_a_bad_option_in_one_line(blog, capsys):
    check_links(DAY0)
    assert "Checked 10 links:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        linkblog.check_links_command(["--now", "yesterday"])
    assert "not an ISO 8601 date-time" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        linkblog.check_links_command(["--now", "2024-03-01T04:00"])
    assert "needs a time zone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        linkblog.check_links_command(["--timeout", "-1"])
    assert "must be a number of seconds" in capsys.readouterr().err


def test_marking_a_dead_link_fine_forgets_its_failures_until_new_ones_add_up(blog, admin_client):
    urls, _ = blog
    three_runs_days_apart()
    link = Link.objects.get(url=urls["not_found"])
    response = admin_client.post("/admin/linkblog/link/", {"action": "mark_fine", "_selected_action": [link.pk]})
    assert response.status_code == 302
    assert Link.objects.get(pk=link.pk).state == "alive"
    link.fine_since = DAY0 + timedelta(days=9)  # marked fine on day 9 of the replayed runs
    link.save()
    check_links(DAY0 + timedelta(days=10))
    assert Link.objects.get(pk=link.pk).state == "suspect"
    check_links(DAY0 + timedelta(days=14))
    check_links(DAY0 + timedelta(days=18))
    assert Link.objects.get(pk=link.pk).state == "dead"


# --- Readers -----------------------------------------------------------------------------------------


def with_archived_copies(urls):
    for url in dead_urls(urls) | {urls["live"]}:
        Link.objects.filter(url=url).update(archived_url=ARCHIVE + url)


def archived_copies_in(html):
    return html.count('class="archived-copy"')


def test_readers_see_an_archived_copy_beside_each_dead_link_in_listings_permalinks_and_feeds(blog, client):
    urls, posts = blog
    three_runs_days_apart()
    with_archived_copies(urls)
    home = client.get("/").content.decode()
    assert archived_copies_in(home) == 5
    for url in dead_urls(urls):
        assert f'href="{ARCHIVE + url}"'.replace("&", "&amp;") in home
    assert ARCHIVE + urls["live"] not in home  # a live link needs no copy
    dead_blogmark = client.get(posts["dead"].get_absolute_url()).content.decode()
    assert archived_copies_in(dead_blogmark) == 2
    assert "[archived copy]" in dead_blogmark.split('class="body"')[0]  # beside the blogmark's own link
    assert archived_copies_in(client.get(posts["live"].get_absolute_url()).content.decode()) == 0
    feed = ElementTree.fromstring(client.get("/atom/everything/").content)
    contents = "".join(entry.find(f"{ATOM}content").text for entry in feed.iter(f"{ATOM}entry"))
    assert archived_copies_in(contents) == 5
    assert all(ARCHIVE + url in contents for url in dead_urls(urls))


def test_a_dead_link_without_an_archived_copy_shows_none(blog, client):
    three_runs_days_apart()
    assert archived_copies_in(client.get("/").content.decode()) == 0


def test_link_states_cost_one_query_per_page_however_many_posts_and_links(blog, client, make, site):
    urls, _ = blog
    three_runs_days_apart()
    with_archived_copies(urls)

    def queries():
        client.get("/")  # the first view after a write renders and stores the new posts' cards
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/").status_code == 200
        return len(captured)

    before = queries()
    for number in range(20):
        make.blogmark(link_url=f"{site.url}/not-found/{number}", commentary=f"[x]({site.url}/gone/{number})")
    assert queries() == before


# --- The author's page -------------------------------------------------------------------------------


def test_the_admin_lists_the_links_needing_attention_by_post_with_their_history(blog, admin_client):
    urls, posts = blog
    three_runs_days_apart()
    page = admin_client.get("/admin/linkblog/link/").content.decode()
    for url in dead_urls(urls) | {urls["moved"], urls["flaky"]}:
        assert str(Link.objects.get(url=url)).replace("&", "&amp;") in page
    assert f">{urls['live']}<" not in page
    assert posts["dead"].link_title in page and f"/admin/linkblog/blogmark/{posts['dead'].pk}/change/" in page
    dead_only = admin_client.get("/admin/linkblog/link/?state=dead").content.decode()
    assert urls["moved"] not in dead_only and urls["not_found"] in dead_only
    by_host = admin_client.get("/admin/linkblog/link/?host=nonexistent.invalid").content.decode()
    assert urls["dns"] in by_host and urls["not_found"] not in by_host
    link = Link.objects.get(url=urls["not_found"])
    history = admin_client.get(f"/admin/linkblog/link/{link.pk}/change/").content.decode()
    assert history.count("not found") >= 3 and "404" in history


def test_accepting_a_move_replaces_the_url_in_the_post_in_one_action(blog, admin_client, site):
    urls, posts = blog
    three_runs_days_apart()
    moved = Link.objects.get(url=urls["moved"])
    admin_client.post("/admin/linkblog/link/", {"action": "accept_new_address", "_selected_action": [moved.pk]})
    assert Quotation.objects.get(pk=posts["moved"].pk).source_url == f"{site.url}/new-home"
    assert urls["moved"] not in states() and states()[f"{site.url}/new-home"] == "alive"


def test_using_the_archived_copy_replaces_the_dead_url_in_links_and_markdown(blog, admin_client):
    urls, posts = blog
    three_runs_days_apart()
    with_archived_copies(urls)
    chosen = Link.objects.filter(url__in=[urls["not_found"], urls["gone"], urls["long_dead"]])
    admin_client.post("/admin/linkblog/link/", {"action": "use_archived_copy", "_selected_action": [link.pk for link in chosen]})
    blogmark = Blogmark.objects.get(pk=posts["dead"].pk)
    assert blogmark.link_url == ARCHIVE + urls["not_found"]
    assert f"[this]({ARCHIVE + urls['gone']})" in blogmark.commentary and urls["live"] in blogmark.commentary
    entry = Entry.objects.get(pk=posts["entry"].pk)
    assert f"<{ARCHIVE + urls['long_dead']}>" in entry.body
    assert f'href="{ARCHIVE}' in entry.html  # rendered again


def test_replacing_a_url_by_hand_changes_every_post_holding_it(blog, admin_client):
    urls, posts = blog
    link = Link.objects.get(url=urls["live"])
    response = admin_client.post(f"/admin/linkblog/link/{link.pk}/change/?state=all", {
        "replace_with": "https://better.example/page", "checks-TOTAL_FORMS": "0", "checks-INITIAL_FORMS": "0"})
    assert response.status_code == 302
    assert Blogmark.objects.get(pk=posts["live"].pk).link_url == "https://better.example/page"
    assert "(https://better.example/page)" in Blogmark.objects.get(pk=posts["dead"].pk).commentary


def test_replacing_needs_the_change_permission_of_the_posts_it_edits(blog):
    urls, posts = blog
    from django.test import Client

    user = User.objects.create_user("editor", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_link", "change_link", "change_quotation"]))
    client = Client()
    client.force_login(user)
    assert posts["live"].link_title not in client.get("/admin/linkblog/link/?state=all").content.decode()  # may not view blogmarks
    user.user_permissions.add(Permission.objects.get(codename="view_blogmark"))
    assert posts["live"].link_title in client.get("/admin/linkblog/link/?state=all").content.decode()
    link = Link.objects.get(url=urls["live"])  # held by two blogmarks
    Link.objects.filter(pk=link.pk).update(archived_url=ARCHIVE + urls["live"])
    response = client.post("/admin/linkblog/link/?state=all", {"action": "use_archived_copy", "_selected_action": [link.pk]},
                           follow=True)
    assert "lacks linkblog.change_blogmark" in response.content.decode()
    assert Blogmark.objects.get(pk=posts["live"].pk).link_url == urls["live"]
    moved = Link.objects.get(url=urls["moved"])  # held by a quotation: allowed
    Link.objects.filter(pk=moved.pk).update(state="moved", final_url="https://moved.example/")
    client.post("/admin/linkblog/link/", {"action": "accept_new_address", "_selected_action": [moved.pk]})
    assert Quotation.objects.get(pk=posts["moved"].pk).source_url == "https://moved.example/"
    assert Client().get("/admin/linkblog/link/").status_code == 302  # not logged in: to the login page


# --- API -----------------------------------------------------------------------------------------------


def test_the_api_gives_each_post_its_links_state_and_archived_copy(blog, client):
    urls, posts = blog
    three_runs_days_apart()
    with_archived_copies(urls)
    items = {item["id"]: item for item in client.get("/api/items?type=blogmark").json()["items"]}
    assert items[posts["dead"].pk]["links"] == [
        {"url": urls["not_found"], "state": "dead", "archived_url": ARCHIVE + urls["not_found"], "final_url": "",
         "last_checked": (DAY0 + timedelta(days=8)).isoformat().replace("+00:00", "Z")},
        {"url": urls["gone"], "state": "dead", "archived_url": ARCHIVE + urls["gone"], "final_url": "",
         "last_checked": (DAY0 + timedelta(days=8)).isoformat().replace("+00:00", "Z")},
        {"url": urls["live"], "state": "alive", "archived_url": ARCHIVE + urls["live"], "final_url": "",
         "last_checked": (DAY0 + timedelta(days=8)).isoformat().replace("+00:00", "Z")},
    ]
    quotation = client.get(f"/api/quotations/{posts['moved'].pk}").json()
    assert quotation["links"][0]["state"] == "moved" and quotation["links"][0]["final_url"].endswith("/new-home")
    listed = client.get("/api/entries").json()["items"][0]
    assert {link["url"]: link["state"] for link in listed["links"]}[urls["long_dead"]] == "dead"
