"""Where SQLite and PostgreSQL could differ (case, ordering ties, time zones, text), the blog behaves
the same. This file runs on SQLite (`pytest`) and on PostgreSQL (`pytest --postgres`)."""

import re
from datetime import datetime, timezone

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def html(response):
    return response.content.decode()


def titles_on(client, url):
    return re.findall(r'<(?:h3 class="p-name"|strong)><a [^>]*>([^<]+)</a>', html(client.get(url)))


def test_the_suite_runs_on_the_database_it_was_asked_for(request):
    expected = "postgresql" if request.config.getoption("--postgres") else "sqlite"
    assert connection.vendor == expected


def test_tag_names_are_stored_lower_case_and_urls_match_exactly(client, make):
    make.entry("Tagged", tags=["Django"])
    assert [tag.tag for tag in make.tag("django").__class__.objects.all()] == ["django"]
    assert client.get("/tags/django/").status_code == 200
    response = client.get("/tags/DJANGO/")  # one page per tag: other casings redirect to it (issue 14)
    assert (response.status_code, response["Location"]) == (301, "/tags/django/")


def test_ties_in_time_across_kinds_never_repeat_or_skip_a_post_between_pages(client, make):
    same_moment = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    made = set()
    for number in range(12):  # the same pks exist in every kind, all at the same moment
        made.add(make.entry(f"Tie entry {number}", created=same_moment).title)
        made.add(make.blogmark(f"Tie link {number}", created=same_moment).link_title)
        made.add(make.quotation(source=f"Tie source {number}", created=same_moment).source)
    first, second = titles_on(client, "/"), titles_on(client, "/?page=2")
    quoted = re.findall(r"&mdash; ([^<]+)<", html(client.get("/"))) + re.findall(r"&mdash; ([^<]+)<", html(client.get("/?page=2")))
    seen = first + second + quoted
    assert len(seen) == len(set(seen)) == 36
    assert set(seen) == made


def test_posts_either_side_of_midnight_utc_get_their_own_day(client, make):
    late = make.entry("Late", created=datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc))
    early = make.entry("Early", created=datetime(2024, 3, 1, 0, 0, 0, tzinfo=timezone.utc))
    assert late.get_absolute_url() == "/2024/Feb/29/late/"
    assert early.get_absolute_url() == "/2024/Mar/1/early/"
    assert "Late" in html(client.get(late.get_absolute_url()))
    assert client.get("/2024/Mar/1/late/").status_code == 404
    # Same slug on each side of midnight: both allowed, each on its own day.
    twin = make.entry("Late", created=datetime(2024, 3, 1, 0, 0, 1, tzinfo=timezone.utc))
    assert twin.slug == "late"


def test_unicode_and_long_text_round_trip(client, make):
    body = "Ünïcödé ✓ 日本語 🐍 " + "long paragraph " * 5000
    entry = make.entry("Ünïcödé ✓ 🐍", body=body)
    entry.refresh_from_db()
    assert entry.body == body
    assert "Ünïcödé ✓ 🐍" in html(client.get(entry.get_absolute_url()))


def test_admin_search_ignores_ascii_case_on_both(admin_client, make):
    make.entry("Django Tips")
    make.entry("Something else")
    found = html(admin_client.get("/admin/linkblog/entry/?q=dJANGO"))
    assert "Django Tips" in found and "Something else" not in found


def test_tag_counts_are_the_same_on_both(client, make):
    make.entry(tags=["a", "b"])
    make.blogmark(tags=["a"])
    make.quotation(tags=["a"], is_draft=True)
    make.tag("empty")
    from linkblog import tags_with_counts

    assert {tag.tag: tag.post_count for tag in tags_with_counts()} == {"a": 2, "b": 1, "empty": 0}
