"""Search: the query language, ranked full-text matching of every kind, facets, highlighting, and an
index that stays in sync with every kind of write. The same tests run on SQLite (FTS5) and PostgreSQL."""

import re
from datetime import date

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.db.migrations.executor import MigrationExecutor
from factories import at

from blogworks import search_index
from blogworks.listing import load_posts
from blogworks.search import tokenize_query
from blogworks.text import highlight
from linkblog import POST_MODELS, SEARCH_INDEX, Blogmark, Entry, Quotation, Tag, search_posts

pytestmark = pytest.mark.django_db


def found(q):
    """The titles (or link titles, or sources) of what a search finds, best first."""
    results = search_posts(q).results()
    rows = list(results)
    assert results.count() == len(rows)
    return [str(post) for post in load_posts(rows, POST_MODELS)]


def parse_query(q):
    return search_posts(q).parsed


def pause_search_index(**kwargs):
    search_index.pause_search_index(SEARCH_INDEX, **kwargs)


def resume_search_index(**kwargs):
    search_index.resume_search_index(SEARCH_INDEX, **kwargs)


def text(response):
    return response.content.decode()


def result_titles(response):
    return [re.sub(r"</?mark>", "", title) for title in re.findall(r'<h3><span class="kind">[^<]*</span>\s*<a [^>]*>(?:Quoting )?(.*?)</a></h3>', text(response), re.S)]


# --- The query language ------------------------------------------------------------------------


@pytest.mark.django_db(False)
def test_the_query_language_reads_filters_phrases_and_negation():
    parsed = parse_query('tag:django type:blogmark year:2024 -tag:python "exact phrase" from:2023-01-01 to:2023-06-30 orm -slow')
    assert parsed.tags == ["django"]
    assert parsed.excluded_tags == ["python"]
    assert parsed.kinds == ["blogmark"]
    assert parsed.years == [2024]
    assert parsed.date_from == date(2023, 1, 1) and parsed.date_to == date(2023, 6, 30)
    assert [(term.text, term.quoted) for term in parsed.words] == [("exact phrase", True), ("orm", False)]
    assert [term.text for term in parsed.excluded_words] == ["slow"]
    assert parsed.notes == []
    assert str(parsed) == 'tag:django type:blogmark year:2024 -tag:python "exact phrase" from:2023-01-01 to:2023-06-30 orm -slow'


@pytest.mark.django_db(False)
def test_type_accepts_plurals_and_the_names_readers_use():
    assert parse_query("type:links type:Quotes type:entries").kinds == ["blogmark", "quotation", "entry"]


@pytest.mark.django_db(False)
@pytest.mark.parametrize(
    "q, note",
    [
        ("year:abc", "Ignored year:abc: a year has four digits, like year:2024."),
        ("year:20245", "Ignored year:20245: a year has four digits, like year:2024."),
        ("year:0000", "Ignored year:0000: a year has four digits, like year:2024."),
        ("from:2023-13-45", "Ignored from:2023-13-45: a date looks like from:2024-01-31."),
        ("to:yesterday", "Ignored to:yesterday: a date looks like to:2024-01-31."),
        ("type:foo", "Ignored type:foo: the types are entry, blogmark and quotation."),
        ("-from:2020-01-01", "Ignored -from:2020-01-01: from: cannot be negated."),
    ],
)
def test_a_bad_filter_value_is_ignored_with_a_note(q, note):
    parsed = parse_query(q + " word")
    assert parsed.notes == [note]
    assert not (parsed.years or parsed.kinds or parsed.date_from or parsed.date_to)
    assert [term.text for term in parsed.words] == ["word"]


@pytest.mark.django_db(False)
def test_unknown_keys_and_urls_are_plain_words():
    parsed = parse_query("foo:bar https://example.com/x")
    assert [term.text for term in parsed.words] == ["foo:bar", "https://example.com/x"]
    assert not parsed.filters


@pytest.mark.django_db(False)
def test_an_unclosed_quote_runs_to_the_end_and_punctuation_alone_is_dropped():
    assert [str(term) for term in tokenize_query('one "two three')] == ["one", '"two three"']
    assert parse_query("*** ^ : ( ) -").is_empty
    assert parse_query('"" -"" -').is_empty


@pytest.mark.django_db(False)
def test_facet_links_add_or_remove_one_filter_and_keep_the_rest():
    parsed = parse_query("orm tag:django")
    assert parsed.with_filter("year", 2024) == "orm tag:django year:2024"
    assert parsed.with_filter("tag", "django") == "orm tag:django"
    assert parsed.filter_removals == [(parsed.filters[0], "orm")]


# --- Finding posts ---------------------------------------------------------------------------------


def test_every_kind_is_found_by_each_of_its_texts_and_its_tags(make):
    make.entry("Pelican entry", body="About a walrus.", tags=["birds"])
    make.blogmark("Heron link", commentary="Mentions an otter.", via_title="Kingfisher blog", tags=["rivers"])
    make.quotation(quotation="The badger said so.", source="Puffin Person", tags=["woodland"])
    make.entry("Unrelated", body="Nothing here.")
    assert found("pelican") == ["Pelican entry"]
    assert found("walrus") == ["Pelican entry"]
    assert found("birds") == ["Pelican entry"]
    assert found("heron") == ["Heron link"]
    assert found("otter") == ["Heron link"]
    assert found("kingfisher") == ["Heron link"]
    assert found("rivers") == ["Heron link"]
    assert found("badger") == ["Puffin Person"]
    assert found("puffin") == ["Puffin Person"]
    assert found("woodland") == ["Puffin Person"]


def test_all_words_must_match_in_any_field_and_case(make):
    make.entry("Django tips", body="Use the ORM wisely.", tags=["python"])
    make.entry("Django news", body="A release.")
    assert found("DJANGO orm") == ["Django tips"]
    assert found("django python") == ["Django tips"]
    assert sorted(found("django")) == ["Django news", "Django tips"]


def test_words_match_their_other_forms(make):
    make.entry("Testing databases", body="Notes.")
    assert found("tests") == ["Testing databases"]
    assert found("database") == ["Testing databases"]


def test_a_quoted_phrase_matches_only_the_words_in_that_order(make):
    make.entry("Together", body="The exact phrase appears here.")
    make.entry("Apart", body="The phrase is not exact in this one.")
    assert found('"exact phrase"') == ["Together"]
    assert sorted(found("exact phrase")) == ["Apart", "Together"]


def test_a_negated_word_leaves_posts_out(make):
    make.entry("Fast search", body="Indexes.")
    make.entry("Slow search", body="Scans.")
    assert found("search -slow") == ["Fast search"]
    assert found("-slow") == ["Fast search"]
    assert found('search -"slow search"') == ["Fast search"]


def test_a_title_match_ranks_above_a_body_match(make):
    make.entry("Something else", body="Capybara mentioned once, deep in the text of a long paragraph about other things.", created=at(2024, 5, 1))
    make.entry("Capybara facts", body="All about the animal.", created=at(2020, 1, 1))
    assert found("capybara") == ["Capybara facts", "Something else"]


def test_filters_narrow_by_tag_type_year_and_dates(make):
    make.entry("Llama one", tags=["django", "python"], created=at(2023, 3, 1))
    make.blogmark("Llama two", tags=["django"], created=at(2024, 2, 1))
    make.quotation(quotation="Llama three", source="Llama three", tags=["python"], created=at(2024, 7, 1))
    make.entry("Llama four", created=at(2022, 12, 31, 23))
    assert sorted(found("llama tag:django")) == ["Llama one", "Llama two"]
    assert found("llama tag:django tag:python") == ["Llama one"]
    assert sorted(found("llama -tag:python")) == ["Llama four", "Llama two"]
    assert found("llama type:blogmark") == ["Llama two"]
    assert sorted(found("llama type:entry type:quotation")) == ["Llama four", "Llama one", "Llama three"]
    assert sorted(found("llama -type:entry")) == ["Llama three", "Llama two"]
    assert sorted(found("llama year:2024")) == ["Llama three", "Llama two"]
    assert found("llama -year:2024 -year:2022") == ["Llama one"]
    assert sorted(found("llama from:2023-01-01 to:2024-06-30")) == ["Llama one", "Llama two"]
    assert found("llama to:2022-12-31") == ["Llama four"]
    assert found("tag:python") == ["Llama three", "Llama one"]  # filters alone: newest first


def test_drafts_never_appear_in_results_or_facets(client, make):
    make.entry("Visible gazelle", tags=["public"])
    make.entry("Secret gazelle", tags=["secret"], is_draft=True)
    make.quotation(quotation="Secret gazelle words", source="Hidden", is_draft=True, created=at(2019, 1, 1))
    assert found("gazelle") == ["Visible gazelle"]
    html = text(client.get("/search/", {"q": "gazelle"}))
    assert "Secret" not in html and "Hidden" not in html
    assert "secret" not in html and "2019" not in html and "Quotations" not in html
    assert "1 result," in html


@pytest.mark.parametrize(
    "q",
    [
        '"unbalanced', 'a"b"c"', "NEAR(a b)", "a AND b OR c NOT d", "^start", "col:umn", "title:word", "*", "prefix*",
        '"', '""', "(", ")", "((a)", "a -", "-", "--x", "-tag:", "tag:", ":", "x" * 5000, "word " * 400,
        "a\x00b", "\x00", "!@#$%^&*()_+-=[]{}|;',./<>?`~", "über café naïve", "日本語 テキスト", "' OR 1=1 --",
        "year:0000", "year:9999", "year:0001", "year:99999999999999999999", "from:0001-01-01", "to:9999-12-31",
        "from:9999-12-31 to:0001-01-01", "year:١٢٣٤", "tag:" + "x" * 300,
        "NOT", "OR", "AND", "NEAR", "a OR", "+", "&", "|", "!!", "<->", "'", "\\", "%", "_",
    ],
)
def test_hostile_queries_never_fail(client, make, q):
    make.entry("Ordinary words", body="Nothing special: a AND b, NEAR, über café.", tags=["x"])
    assert client.get("/search/", {"q": q}).status_code == 200
    found(q)


def test_operators_are_searched_as_plain_words(make):
    make.entry("Near the river", body="Cats and dogs.")
    make.entry("Far away", body="Cats or dogs.")
    assert found("near") == ["Near the river"]
    assert found("NEAR river") == ["Near the river"]
    assert found("cats OR nothing") == []


# --- The search page -----------------------------------------------------------------------------


def test_an_empty_search_shows_the_form_and_how_to_search(client, make):
    make.entry("Something")
    for q in ["", "   ", "***"]:
        response = client.get("/search/", {"q": q})
        assert response.status_code == 200
        assert 'name="q"' in text(response)
        assert "tag:django" in text(response)
        assert "result" not in text(response)
    assert client.get("/search/").status_code == 200


def test_results_are_listed_with_the_query_kept_in_the_box_and_words_marked(client, make):
    make.entry("Walrus <facts>", body="The walrus & its tusks.\n\nMore.", tags=["animals"])
    make.blogmark("Walrus link", link_url="https://example.com/walrus", commentary="A **walrus** page.")
    make.quotation(quotation="I am the walrus.", source="John")
    response = client.get("/search/", {"q": 'walrus "its tusks"'})
    html = text(response)
    assert 'value="walrus &quot;its tusks&quot;"' in html
    assert result_titles(response) == ["Walrus &lt;facts&gt;"]
    assert "<mark>Walrus</mark> &lt;facts&gt;" in html
    assert "The <mark>walrus</mark> &amp; <mark>its</mark> <mark>tusks</mark>." in html
    assert "<facts>" not in html
    all_three = client.get("/search/", {"q": "walrus"})
    assert sorted(result_titles(all_three)) == ["John", "Walrus &lt;facts&gt;", "Walrus link"]
    assert "Quoting John" in text(all_three)
    assert '<a href="https://example.com/walrus">' in text(all_three)


@pytest.mark.django_db(False)
def test_highlighting_escapes_before_marking():
    assert highlight('<script>alert("x")</script> x', ["x"]) == '&lt;script&gt;alert(&quot;<mark>x</mark>&quot;)&lt;/script&gt; <mark>x</mark>'
    assert highlight("Tests & testing", ["test"]) == "<mark>Tests</mark> &amp; <mark>testing</mark>"
    assert highlight("a <b>", []) == "a &lt;b&gt;"
    assert highlight("amp &amp", ["amp"]) == "<mark>amp</mark> &amp;<mark>amp</mark>"


def test_facets_count_kinds_years_and_tags_and_link_to_narrower_searches(client, make):
    make.entry("Okapi one", tags=["zoo"], created=at(2023, 1, 1))
    make.entry("Okapi two", tags=["zoo", "africa"], created=at(2024, 1, 1))
    make.blogmark("Okapi three", tags=["africa"], created=at(2024, 2, 1))
    html = text(client.get("/search/", {"q": "okapi"}))
    facets = dict(re.findall(r'<a href="\?q=([^"]*)"[^>]*>([^<]+)</a> <span class="count">(\d+)</span>', html) and
                  [((label, count), link) for link, label, count in re.findall(r'<a href="\?q=([^"]*)"[^>]*>([^<]+)</a> <span class="count">(\d+)</span>', html)])
    assert facets == {
        ("Entries", "2"): "okapi+type%3Aentry",
        ("Blogmarks", "1"): "okapi+type%3Ablogmark",
        ("2024", "2"): "okapi+year%3A2024",
        ("2023", "1"): "okapi+year%3A2023",
        ("africa", "2"): "okapi+tag%3Aafrica",
        ("zoo", "2"): "okapi+tag%3Azoo",
    }
    narrowed = client.get("/search/", {"q": "okapi tag:africa", "page": "1"})
    assert result_titles(narrowed) == ["Okapi three", "Okapi two"]
    narrowed_html = text(narrowed)
    assert 'class="filter" href="?q=okapi"' in narrowed_html  # remove the filter, keep the words, drop the page
    assert '<li class="active"><a href="?q=okapi" aria-current="true"' in narrowed_html
    assert 'href="?q=okapi+tag%3Aafrica+year%3A2024"' in narrowed_html


def test_a_bad_filter_shows_its_note_on_the_page(client, make):
    make.entry("Ibex")
    html = text(client.get("/search/", {"q": "ibex year:abc"}))
    assert "Ignored year:abc: a year has four digits" in html
    assert result_titles(client.get("/search/", {"q": "ibex year:abc"})) == ["Ibex"]


def test_results_paginate_in_a_fixed_number_of_queries(client, make, settings, django_assert_num_queries):
    """A page of results is its posts' stored cards (blogworks/cards.py): the first search after
    writes renders and stores them in as many queries for 10 results as for 30, and later searches
    read them in four (count the matches, find the page's rows, read their cards, count the tags)."""
    settings.LINKBLOG_PAGE_CACHE = False  # every search below is rendered, not served from the page cache
    for number in range(35):
        make.entry(f"Marmot {number:02}", tags=[f"tag{number % 3}"], created=at(2020 + number % 4, 1, 1, minute=number))
        make.blogmark(f"Marmot link {number:02}", tags=["links"], created=at(2021, 1, 1, minute=number))
    with CaptureQueriesContext(connection) as rendering_ten:
        third = client.get("/search/", {"q": "marmot", "page": "3"})
    with CaptureQueriesContext(connection) as rendering_thirty:
        first = client.get("/search/", {"q": "marmot"})
    assert len(rendering_thirty) == len(rendering_ten)
    assert len(result_titles(first)) == 30
    assert "70 results" in text(first)
    assert 'rel="next" href="?q=marmot&amp;page=2"' in text(first)
    assert len(result_titles(third)) == 10
    for page in ("1", "3"):
        with django_assert_num_queries(4):
            assert client.get("/search/", {"q": "marmot", "page": page}).content.decode() == (first if page == "1" else third).content.decode()
    assert client.get("/search/", {"q": "marmot", "page": "4"}).status_code == 404
    seen = result_titles(first) + result_titles(client.get("/search/", {"q": "marmot", "page": "2"})) + result_titles(third)
    assert len(set(seen)) == 70


@pytest.mark.parametrize("date_walk_from", [46, 10000], ids=["walking-the-dates", "from-the-matches"])
def test_a_word_in_very_many_posts_lists_the_newest_and_says_how_far_it_counted(client, make, monkeypatch, date_walk_from):
    """A search reads a bounded number of matches (small limits here, 1,000 and 2,000 in the site):
    past them it lists the newest, newest first, and counts and facets those; drafts never count."""
    from blogworks import search

    monkeypatch.setattr(search, "DATE_WALK_FROM", date_walk_from, raising=False)
    monkeypatch.setattr(search, "SAMPLE_SIZE", 40, raising=False)  # raising: the test must fail (not error) before them
    monkeypatch.setattr(search, "RANKED_LIMIT", 45, raising=False)
    for number in range(50):
        make.entry(f"Walrus {number:02}", tags=["old" if number < 10 else "new"], created=at(2010 + number // 5, 1, 1, minute=number))
    make.entry("Walrus secret", tags=["secret"], is_draft=True, created=at(2030, 1, 1))
    make.blogmark("Walrus scheduled", tags=["secret"], created=at(2099, 1, 1))
    first = client.get("/search/", {"q": "walrus"})
    html = text(first)
    assert "More than 40 results" in html and "newest first" in html and "best match first" not in html
    assert "Counted in the newest 40 results" in html
    assert result_titles(first) == [f"Walrus {number:02}" for number in range(49, 19, -1)]
    assert result_titles(client.get("/search/", {"q": "walrus", "page": "2"})) == [f"Walrus {number:02}" for number in range(19, 9, -1)]
    assert client.get("/search/", {"q": "walrus", "page": "3"}).status_code == 404
    assert "secret" not in html.lower() and "scheduled" not in html.lower() and "2030" not in html
    assert re.search(r'>new</a> <span class="count">40</span>', html) and ">old<" not in html
    assert re.search(r'>2019</a> <span class="count">5</span>', html) and ">2011<" not in html
    # Narrowed by a filter: all of them, still newest first (the index counts the word, not the filter).
    assert "5 results, newest first" in text(client.get("/search/", {"q": "walrus year:2012"}))
    # Few matches in the index: every one, ranked, counted exactly.
    make.entry("Walrus narwhal narwhal", created=at(2001, 1, 1))
    make.entry("Narwhal", created=at(2000, 1, 1))
    ranked = client.get("/search/", {"q": "narwhal"})
    assert "2 results, best match first" in text(ranked) and sorted(result_titles(ranked)) == ["Narwhal", "Walrus narwhal narwhal"]


def test_the_newest_matches_are_the_newest_by_date_whatever_order_posts_were_written_in(client, make, monkeypatch):
    """Past the ranked limit a search lists the newest matches by date, though an archive imported
    after newer posts has the higher ids, a post's date was moved, and drafts and scheduled posts are
    among the newest; and every post keeps one index row through all of it."""
    from blogworks import search

    monkeypatch.setattr(search, "SAMPLE_SIZE", 20, raising=False)
    monkeypatch.setattr(search, "RANKED_LIMIT", 25, raising=False)
    monkeypatch.setattr(search, "SAMPLE_MARGIN", 3, raising=False)  # few candidates past the sample
    for number in range(15):  # written first: the lowest ids, the newest dates
        make.blogmark(f"Walrus recent {number:02}", created=at(2024, 1, 1, minute=number))
    for number in range(20):  # an old archive imported afterwards: higher ids, older dates
        make.entry(f"Walrus archive {number:02}", created=at(2004 + number // 4, 1, 1, minute=number))
    moved = make.entry("Walrus moved", created=at(1999, 1, 1))
    moved.created = at(2025, 6, 1)  # now the newest of all
    moved.save()
    Entry.objects.filter(title="Walrus archive 00").update(created=at(2024, 2, 1))  # moved without save()

    def newest():
        rows = search_posts("walrus").page_rows
        assert not rows.complete and not rows.ranked
        return [str(post) for post in load_posts(rows.rows, POST_MODELS)]

    expected = (["Walrus moved", "Walrus archive 00"] + [f"Walrus recent {number:02}" for number in range(14, -1, -1)]
                + ["Walrus archive 19", "Walrus archive 18", "Walrus archive 17"])
    assert newest() == expected
    # Drafts and scheduled posts newer than all of them take the candidates' places: still the same.
    for number in range(5):
        make.entry(f"Walrus draft {number}", is_draft=True, created=at(2026, 1, 1, minute=number))
        make.blogmark(f"Walrus scheduled {number}", created=at(2099, 1, 1, minute=number))
    assert newest() == expected
    assert result_titles(client.get("/search/", {"q": "walrus"}))[:3] == expected[:3]
    assert index_rows() == {"entry": 26, "blogmark": 20, "quotation": 0}
    moved.delete()
    assert index_rows() == {"entry": 25, "blogmark": 20, "quotation": 0}
    assert newest()[:2] == ["Walrus archive 00", "Walrus recent 14"]


def test_an_import_that_moves_a_posts_time_leaves_one_index_row():
    """An import indexes its posts at the end (search_index.SearchIndexBatch): a post it moved to
    another time of its day (matched by day and slug) is found once, as it now is."""
    import io
    import json

    from linkblog import import_posts

    entry = {"type": "entry", "slug": "okapi", "title": "Okapi notes", "body": "An okapi.", "created": "2004-01-02T00:00:00Z"}
    import_posts(io.BytesIO((json.dumps(entry) + "\n").encode()))
    moved = {**entry, "title": "Okapi moved", "created": "2004-01-02T23:30:00Z"}
    import_posts(io.BytesIO((json.dumps(moved) + "\n").encode()))
    assert Entry.objects.get().title == "Okapi moved"
    assert index_rows()["entry"] == 1
    assert found("okapi") == ["Okapi moved"] and found("notes") == []


def test_tag_pages_and_every_page_have_a_search_box(client, make):
    make.entry("Tagged", tags=["django", "orm"])
    tag_html = text(client.get("/tags/django/"))
    assert re.search(r'<form class="search-form tag-search" action="/search/"[^>]*>\s*<input type="search" name="q" value="tag:django "', tag_html)
    combined_html = text(client.get("/tags/django+orm/"))
    assert re.search(r'<input type="search" name="q" value="tag:django tag:orm "', combined_html)
    assert '<form class="nav-search" action="/search/"' in text(client.get("/"))


def test_searching_within_a_tag_finds_only_that_tags_posts(client, make):
    make.entry("Heron in django", tags=["django"])
    make.entry("Heron elsewhere", tags=["python"])
    assert result_titles(client.get("/search/", {"q": "tag:django heron"})) == ["Heron in django"]


def test_a_common_word_within_a_small_tag_lists_that_tags_newest_matches(client, make, monkeypatch):
    """A word in many posts, searched within a tag that few of its newest matches carry (a tag page's
    search box): the page lists the tag's matches, newest first, and on SQLite the index itself hands
    out only those (each tag is a token of its index row), so the count that picks the way counts
    them and not every post with the word. A tag whose name begins another's, or differs by a hyphen
    or an underscore, is another tag."""
    from blogworks import search

    monkeypatch.setattr(search, "SAMPLE_SIZE", 20, raising=False)
    monkeypatch.setattr(search, "RANKED_LIMIT", 25, raising=False)
    monkeypatch.setattr(search, "SAMPLE_MARGIN", 3, raising=False)
    for number in range(40):  # the newest posts with the word carry the other tags
        make.blogmark(f"Walrus news {number:02}", tags=[["py-extra", "py_extra", "pyx"][number % 3]],
                      created=at(2024, 1, 1, minute=number))
    for number in range(8):
        make.entry(f"Walrus py {number}", tags=["py"], created=at(2010 + number, 1, 1))
    make.entry("Walrus py draft", tags=["py"], is_draft=True, created=at(2025, 1, 1))
    found_in_tag = search_posts("walrus tag:py")
    expected = [f"Walrus py {number}" for number in range(7, -1, -1)]
    assert result_titles(client.get("/search/", {"q": "walrus tag:py"})) == expected
    assert found_in_tag.index_matches == (9 if connection.vendor == "sqlite" else 26)  # PostgreSQL: the word (to RANKED_LIMIT + 1)
    assert sorted(found("walrus tag:py-extra")) == sorted(f"Walrus news {number:02}" for number in range(0, 40, 3))
    assert found("walrus tag:py tag:pyx") == [] and found("walrus tag:p") == []


# --- The index follows every write -----------------------------------------------------------------


def test_edits_deletes_and_tag_changes_are_found_at_once(make):
    entry = make.entry("Original aardvark", body="First body.")
    entry.title = "Renamed anteater"
    entry.save()
    assert found("aardvark") == [] and found("anteater") == ["Renamed anteater"]
    entry.tags.add(make.tag("burrowing"))
    assert found("burrowing") == ["Renamed anteater"] and found("anteater tag:burrowing") == ["Renamed anteater"]
    entry.tags.clear()
    assert found("burrowing") == [] and found("anteater tag:burrowing") == []
    entry.delete()
    assert found("anteater") == []
    assert index_rows() == {"entry": 0, "blogmark": 0, "quotation": 0}


def index_rows():
    """How many rows each kind's index table holds."""
    counts = {}
    with connection.cursor() as cursor:
        for kind in POST_MODELS:
            cursor.execute(f"SELECT COUNT(*) FROM linkblog_{kind}_search")
            counts[kind] = cursor.fetchone()[0]
    return counts


def test_renaming_a_tag_renames_it_in_search(make):
    make.blogmark("Tagged link", tags=["oldname"])
    make.quotation(source="Tagged quote", tags=["oldname"])
    tag = Tag.objects.get(tag="oldname")
    tag.tag = "newname"
    tag.save()
    assert found("oldname") == []
    assert sorted(found("newname")) == ["Tagged link", "Tagged quote"]
    assert sorted(found("tagged tag:newname")) == ["Tagged link", "Tagged quote"] and found("tagged tag:oldname") == []
    tag.delete()
    assert found("newname") == []


def test_admin_saves_and_deletes_are_searchable(admin_client, make):
    tag = make.tag("admin-tag")
    response = admin_client.post(
        "/admin/linkblog/entry/add/",
        {"title": "Written in the admin", "slug": "", "body": "Quokka sighting.", "tags": [tag.pk],
         "created_0": "2024-05-01", "created_1": "10:00:00"},
    )
    assert response.status_code == 302
    assert found("quokka") == ["Written in the admin"]
    assert found("admin-tag") == ["Written in the admin"]
    entry = Entry.objects.get()
    admin_client.post(f"/admin/linkblog/entry/{entry.pk}/delete/", {"post": "yes"})
    assert found("quokka") == []


def test_bulk_imports_and_raw_tag_rows_are_indexed(make):
    tag = make.tag("imported")
    posts = [Entry(title=f"Imported narwhal {number}", body="Bulk.", slug=f"imported-{number}") for number in range(3)]
    for post in posts:
        post.render()
    created = Entry.objects.bulk_create(posts)
    Entry.tags.through.objects.bulk_create([Entry.tags.through(entry_id=created[0].pk, tag_id=tag.pk)])
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO linkblog_entry_tags (entry_id, tag_id) VALUES ({created[1].pk}, {tag.pk})")
    assert len(found("narwhal")) == 3
    assert sorted(found("narwhal imported")) == ["Imported narwhal 0", "Imported narwhal 1", "Imported narwhal 2"]
    assert sorted(found("narwhal tag:imported")) == ["Imported narwhal 0", "Imported narwhal 1"]
    Entry.objects.filter(pk=created[2].pk).update(title="Changed by update")
    assert sorted(found("narwhal")) == ["Imported narwhal 0", "Imported narwhal 1"]
    Entry.objects.filter(title__startswith="Imported").delete()
    assert found("narwhal") == []


@pytest.mark.django_db(transaction=True)
def test_migrating_indexes_existing_posts(make):
    """The migration that adds the index indexes what is already there (an existing database)."""
    make.entry("Written before search existed", body="Tapir.", tags=["old"])
    call_command("migrate", "linkblog", "0002", verbosity=0)
    # Written with the model as it was at 0002 (today's model has columns added since).
    old_entry = MigrationExecutor(connection).loader.project_state(("linkblog", "0002_post_ordering_and_slug_required")).apps.get_model("linkblog", "Entry")
    old_entry.objects.create(title="Written while search was gone", body="Tapir too.", slug="gone", html="<p>Tapir too.</p>")
    call_command("migrate", "linkblog", verbosity=0)
    assert sorted(found("tapir")) == ["Written before search existed", "Written while search was gone"]
    assert found("old") == ["Written before search existed"]


def altered_field(model, name, **changes):
    """A copy of a model's field with some attributes changed, as a migration would alter it."""
    old = model._meta.get_field(name)
    new = old.clone()
    new.set_attributes_from_name(name)
    new.model = model
    for attribute, value in changes.items():
        setattr(new, attribute, value)
    return old, new


@pytest.mark.django_db(transaction=True)
def test_search_stays_in_sync_after_a_migration_rebuilds_a_table(make):
    """To alter a column SQLite rebuilds the table, which fails while search triggers name it: migrate
    pauses the triggers before migrations run and resumes them (refilling the index) afterwards."""
    make.entry("Before the rebuild", body="Tapir.", tags=["rebuilt"])
    old, new = altered_field(Tag, "description", null=True)
    plan = [("a migration", False)]
    pause_search_index(plan=plan)  # what migrate's pre_migrate signal runs
    with connection.schema_editor() as editor:
        editor.alter_field(Tag, old, new)
    make.entry("Written during the migration", body="Tapir.")
    resume_search_index()  # what migrate's post_migrate signal runs
    try:
        make.entry("After the rebuild", body="Tapir too.", tags=["rebuilt"])
        Tag.objects.filter(tag="rebuilt").update(tag="renamed")
        assert sorted(found("tapir")) == ["After the rebuild", "Before the rebuild", "Written during the migration"]
        assert sorted(found("renamed")) == ["After the rebuild", "Before the rebuild"]
    finally:
        pause_search_index(plan=plan)
        with connection.schema_editor() as editor:
            editor.alter_field(Tag, new, old)
        resume_search_index()


@pytest.mark.django_db(transaction=True)
def test_the_index_holds_one_row_per_post_through_every_write(make):
    assert index_rows() == {"entry": 0, "blogmark": 0, "quotation": 0}  # emptied with the tables after other tests
    entry = make.entry("Counted", tags=["zebra", "yak"])
    make.blogmark("Counted link", tags=["zebra"])
    make.quotation(source="Counted source")
    entry.tags.remove(Tag.objects.get(tag="zebra"))
    Tag.objects.filter(tag="yak").update(tag="xerus")
    assert index_rows() == {"entry": 1, "blogmark": 1, "quotation": 1}
    assert found("xerus") == ["Counted"] and found("yak") == [] and found("zebra") == ["Counted link"]
    assert found("counted tag:xerus") == ["Counted"] and found("counted tag:zebra") == ["Counted link"]
    Tag.objects.all().delete()
    assert index_rows() == {"entry": 1, "blogmark": 1, "quotation": 1}
    assert found("xerus") == [] and found("zebra") == []
    Entry.objects.all().delete()
    assert index_rows() == {"entry": 0, "blogmark": 1, "quotation": 1}


def test_search_posts_searches_the_querysets_it_is_given(make):
    make.entry("Drafted bongo", is_draft=True)
    make.entry("Published bongo")
    every_post = {kind: model.objects.all() for kind, model in POST_MODELS.items()}
    found_posts = search_posts("bongo", every_post)
    rows, parsed = found_posts.results(), found_posts.parsed
    assert sorted(str(post) for post in load_posts(list(rows), POST_MODELS)) == ["Drafted bongo", "Published bongo"]
    assert parsed.highlight_words == ["bongo"]
    assert {Blogmark, Quotation} <= set(POST_MODELS.values())


def test_imported_posts_are_found_and_reimports_update_the_index():
    import io
    import json

    from linkblog import import_posts

    def ndjson(*records):
        return io.BytesIO("".join(json.dumps(record) + "\n" for record in records).encode())

    blogmark = {"type": "blogmark", "slug": "axolotl", "link_url": "https://example.com/", "link_title": "Axolotl facts",
                "created": "2024-01-01T00:00:00Z", "tags": ["amphibians"]}
    entry = {"type": "entry", "slug": "pond", "title": "Pond notes", "body": "An axolotl lives here.",
             "created": "2024-01-02T00:00:00Z", "tags": ["ponds"]}
    import_posts(ndjson(blogmark, entry))
    assert sorted(found("axolotl")) == ["Axolotl facts", "Pond notes"]
    assert found("amphibians") == ["Axolotl facts"]
    import_posts(ndjson({**blogmark, "link_title": "Salamander facts", "tags": ["newts"]}, entry))
    assert found("axolotl") == ["Pond notes"]
    assert found("salamander newts") == ["Salamander facts"]
    assert found("amphibians") == []


# --- The API accepts the same q -------------------------------------------------------------------


def test_api_items_search_with_the_same_query_language(client, make):
    make.entry("Gecko care", body="Warm rocks.", tags=["reptiles"], created=at(2024, 1, 1))
    make.blogmark("Gecko link", commentary="A gecko site.", created=at(2024, 2, 1))
    make.quotation(quotation="Geckos climb.", source="A keeper", tags=["reptiles"], created=at(2023, 1, 1))
    make.entry("Gecko secrets", is_draft=True)
    make.entry("Unrelated", tags=["reptiles"])
    body = client.get("/api/items", {"q": "gecko"}).json()
    assert body["count"] == 3
    assert sorted(item["type"] for item in body["items"]) == ["blogmark", "entry", "quotation"]
    assert "Gecko secrets" not in str(body)
    narrowed = client.get("/api/items", {"q": "gecko tag:reptiles -type:quotation"}).json()
    assert [item["title"] for item in narrowed["items"]] == ["Gecko care"]
    with_type = client.get("/api/items", {"q": "gecko", "type": "blogmark", "limit": 1}).json()
    assert with_type["count"] == 1 and with_type["items"][0]["link_title"] == "Gecko link"
    for hostile in ['"unbalanced', "NEAR(a b) OR *", "year:abc", "\x00", "   "]:
        assert client.get("/api/items", {"q": hostile}).status_code == 200
    assert client.get("/api/items", {"q": "x" * 501}).status_code == 422


# --- In a real browser -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_reader_searches_within_a_tag_and_narrows_with_facets(page, live_server, make, artifacts):
    for number in range(6):
        make.entry(f"Pony tricks {number}", body="How the pony learned to jump.", tags=["django", f"t{number % 2}"], created=at(2023 + number % 2, 3, 1 + number))
    make.blogmark("Pony link", commentary="A pony site.", tags=["django"], created=at(2024, 5, 1))
    make.entry("Pony elsewhere", tags=["python"])
    page.goto(f"{live_server.url}/tags/django/")
    box = page.get_by_role("searchbox", name="Search posts tagged django")
    assert box.input_value() == "tag:django "
    box.press("End")
    box.type("pony")
    box.press("Enter")
    page.wait_for_url(re.compile(r"/search/\?q=tag%3Adjango\+pony$"))
    assert page.get_by_role("searchbox", name="Search posts", exact=True).input_value() == "tag:django pony"
    assert page.locator("article.search-result").count() == 7
    assert page.locator("article.search-result mark").first.inner_text().lower() == "pony"
    page.screenshot(path=str(artifacts / "search.png"), full_page=True)

    page.locator(".facets").get_by_role("link", name="Blogmarks").click()
    page.wait_for_url(re.compile(r"type%3Ablogmark"))
    assert page.locator("article.search-result h3 a").all_inner_texts() == ["Pony link"]
    page.locator(".active-filters").get_by_role("link", name=re.compile("tag:django")).click()
    page.wait_for_url(re.compile(r"\?q=pony\+type%3Ablogmark$"))
    assert page.locator("article.search-result").count() == 1

    page.get_by_role("searchbox", name="Search posts", exact=True).fill('"learned to jump" year:20x')
    page.get_by_role("searchbox", name="Search posts", exact=True).press("Enter")
    page.wait_for_load_state()
    assert page.locator(".search-note").inner_text() == "Ignored year:20x: a year has four digits, like year:2024."
    assert page.locator("article.search-result").count() == 6


@pytest.mark.django_db(transaction=True)
def test_the_search_page_fits_a_phone(browser, live_server, make):
    make.entry("A rather long title about searching for things on a small screen", body="Searching words.", tags=["a-long-tag-name"])
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    phone = context.new_page()
    phone.goto(f"{live_server.url}/search/?q=searching+tag:a-long-tag-name+type:entry+year:2026")
    assert phone.locator("article.search-result").count() == 1
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    context.close()
