"""Stored listing cards (issue 15): each post's card is rendered once after it changes and stored, and
listing pages join the stored cards. What a reader relies on: every change to what a card shows
(the post, its tags, a tag's name, its links' states, the templates) is on every page at once;
drafts and scheduled posts never appear; the Edit link reaches only those who may edit.

Each test first visits every page, so that the cards are stored before the change it makes."""

import io
import json
import shutil
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings

import linkblog
from blogworks import linkstore
from factories import at
from linkblog import ApiToken, Entry, Link, LinkCheck, PostCard, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_page_cache(settings):
    """Pages rendered afresh each time: these tests are about the stored cards (tests/test_cache.py is
    about the page cache, which every write here empties anyway)."""
    settings.LINKBLOG_PAGE_CACHE = False

WHEN = at(2024, 5, 7, 9)
ARCHIVED = "https://archive.test/web/2024/https://gone.example/page"
# Pages and feeds offer a dead link's archived copy; the API gives every link's copy, and its state.
DEAD_WITH_COPY = {"page": ARCHIVED, "feed": ARCHIVED, "api": '"state": "dead"'}


def listings(post):
    """Every page, feed and API list showing `post`: its permalink, home, each of its tags' pages, its
    month and its day, a search for its year; the feeds of everything, of its kind and of each of its
    tags; /api/items, of every kind and of each of its tags."""
    day = post.created
    month = linkblog.MONTHS[day.month - 1]
    tags = [tag.tag for tag in post.tags.all()]
    return [post.get_absolute_url(), "/", *[f"/tags/{name}/" for name in tags], f"/{day.year}/{month}/", f"/{day.year}/{month}/{day.day}/",
            f"/search/?q=year:{day.year}",
            "/atom/everything/", f"/atom/{post.feed_name}/", *[f"/tags/{name}.atom" for name in tags],
            "/api/items", *[f"/api/items?tag={name}" for name in tags]]


def shown_as(url):
    return "api" if url.startswith("/api/") else "feed" if "atom" in url else "page"


def shown_tag(name):
    """How a listing page, a feed and the API show that a post carries the tag `name`."""
    return {"page": f'rel="tag">{name}</a>', "feed": f'<category term="{name}"/>', "api": f'"{name}"'}


def pages(client, urls):
    """{url: page text}, each answering 200."""
    found = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        found[url] = response.content.decode()
    return found


def visit(client, post):
    """Visit every listing of `post` (its card is stored by then); return those URLs."""
    urls = listings(post)
    pages(client, urls)
    assert PostCard.objects.filter(kind=post.kind, post_id=post.pk).exists()
    return urls


def everywhere(client, urls, present=(), absent=()):
    """Each text in `present` is on every page of `urls`, none in `absent`. A text may be a dict
    {"page", "feed" or "api": text} when they show it differently (a kind left out: not shown there)."""
    for url, page in pages(client, urls).items():
        for text in present:
            text = text.get(shown_as(url), "") if isinstance(text, dict) else text
            assert text in page, f"{text!r} missing on {url}"
        for text in absent:
            text = text.get(shown_as(url)) if isinstance(text, dict) else text
            assert text is None or text not in page, f"{text!r} still on {url}"


def without(urls, *names):
    """`urls` less the tag pages and feeds of the tags named (gone, or renamed)."""
    gone = {url for name in names for url in (f"/tags/{name}/", f"/tags/{name}.atom", f"/api/items?tag={name}")}
    return [url for url in urls if url not in gone]


@pytest.fixture
def post(make):
    make.entry("An older neighbour", tags=["web"], created=WHEN - timedelta(hours=2))
    return make.entry("The first title", tags=["web", "python"], created=WHEN)


def test_a_new_title_is_on_every_listing_at_once(client, post):
    urls = visit(client, post)
    post.title = "A better title"
    post.save()
    assert list(PostCard.objects.values_list("post_id", flat=True)) == [Entry.objects.get(title="An older neighbour").pk]
    everywhere(client, urls, present=["A better title"], absent=["The first title"])


def test_tags_added_or_removed_from_either_side_are_on_every_listing_at_once(client, post, make):
    urls = visit(client, post)
    post.tags.add(make.tag("django"))
    everywhere(client, urls, present=[shown_tag("django")])
    post.tags.remove(Tag.objects.get(tag="python"))
    urls = without(urls, "python")  # no published post carries it now: 404
    everywhere(client, urls, absent=[shown_tag("python")])
    make.tag("rust").entry_set.add(post)  # from the tag's side
    everywhere(client, urls, present=[shown_tag("rust")])
    Tag.objects.get(tag="rust").entry_set.clear()
    everywhere(client, urls, absent=[shown_tag("rust")])


def test_a_renamed_tag_is_on_every_listing_at_once(client, post):
    urls = visit(client, post)
    tag = Tag.objects.get(tag="python")
    tag.tag = "python3"
    tag.save()
    everywhere(client, without(urls, "python"), present=[shown_tag("python3")], absent=[shown_tag("python")])


def test_a_tag_renamed_merged_or_deleted_through_the_api_is_on_every_listing_at_once(client, post, make):
    staff = User.objects.create_superuser("author", "author@example.com", "pw")
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(staff, 'tests')}"}
    urls = without(visit(client, post), "python")

    def api(url, payload):
        response = client.post(url, json.dumps(payload), content_type="application/json", **bearer)
        assert response.status_code == 200, response.content

    api("/api/tags/python/rename", {"to": "py"})
    everywhere(client, urls, present=[shown_tag("py")], absent=[shown_tag("python")])
    make.tag("programming")
    api("/api/tags/py/merge", {"into": "programming"})
    everywhere(client, urls, present=[shown_tag("programming")], absent=[shown_tag("py")])
    Tag.objects.get(tag="programming").delete()
    everywhere(client, urls, absent=[shown_tag("programming")])


@contextmanager
def deployed(templates):
    """The site running with the `templates` folder searched first, as after a deploy that edited them."""
    engine = settings.TEMPLATES[0]
    try:
        with override_settings(TEMPLATES=[{**engine, "DIRS": [str(templates), *engine["DIRS"]]}]):
            linkblog.app._register_template_library()  # nanodjango's {% load linkblog %}, on the new engine
            yield
    finally:
        linkblog.app._register_template_library()


def test_an_edited_template_is_on_every_listing_at_once(client, post, tmp_path):
    urls = visit(client, post)
    templates = tmp_path / "templates"
    shutil.copytree(Path(linkblog.__file__).parent / "templates", templates)
    meta = templates / "_post_meta.html"  # included by every kind's card
    meta.write_text(meta.read_text().replace('<p class="meta">', '<p class="meta">Filed under'))
    dead_links = templates / "_dead_links.html"  # included by every kind's feed entry
    dead_links.write_text("Fed by hand" + dead_links.read_text())
    with deployed(templates):
        everywhere(client, urls, present=[{"page": "Filed under", "feed": "Fed by hand"}])
        digest = linkblog.CARDS.digest()
        assert set(PostCard.objects.values_list("digest", flat=True)) == {digest}
    everywhere(client, urls, absent=["Filed under", "Fed by hand"])  # and back


def test_an_edited_search_result_template_is_on_the_search_page_at_once(client, post, tmp_path):
    search = [url for url in visit(client, post) if url.startswith("/search/")]
    templates = tmp_path / "templates"
    shutil.copytree(Path(linkblog.__file__).parent / "templates", templates)
    result = templates / "_search_result.html"  # a search result's own template, included by no listing card
    result.write_text(result.read_text().replace('<p class="excerpt">', '<p class="excerpt">Found in: '))
    with deployed(templates):
        everywhere(client, search, present=["Found in: A paragraph."])
    everywhere(client, search, absent=["Found in"])


def test_a_new_base_url_setting_renders_cards_again(client, post):
    visit(client, post)
    before = PostCard.objects.get(post_id=post.pk).digest
    with override_settings(LINKBLOG_BASE_URL="https://elsewhere.example"):
        client.get("/")
    assert PostCard.objects.get(post_id=post.pk).digest != before


def test_a_changed_api_schema_renders_cards_again(client, post, monkeypatch):
    visit(client, post)
    before = PostCard.objects.get(post_id=post.pk).digest
    monkeypatch.setattr(linkblog.CARDS, "shape", '{"a": "new field"}')  # as after a deploy that changed Item
    client.get("/api/items")
    assert PostCard.objects.get(post_id=post.pk).digest != before


# --- Links' states ---------------------------------------------------------------------------------


@pytest.fixture
def linking(make):
    make.entry("An older neighbour", tags=["web"], created=WHEN - timedelta(hours=2))
    post = make.blogmark("A page that will die", link_url="https://gone.example/page", tags=["web"], created=WHEN)
    Link.objects.filter(url="https://gone.example/page").update(archived_url=ARCHIVED)
    return post


def failing_checks(link, days):
    for day in days:
        LinkCheck.objects.create(link=link, checked_at=WHEN + timedelta(days=day), outcome="not_found", status=404)


def test_a_link_found_dead_shows_its_archived_copy_on_every_listing_at_once(client, linking):
    urls = visit(client, linking)
    everywhere(client, urls, absent=[DEAD_WITH_COPY])
    link = Link.objects.get(url="https://gone.example/page")
    failing_checks(link, (1, 5, 9))
    linkstore.classify_links(Link, LinkCheck, WHEN + timedelta(days=9))  # what check-links runs
    assert Link.objects.get(pk=link.pk).state == "dead"
    everywhere(client, urls, present=[DEAD_WITH_COPY, {"page": "[archived copy]", "feed": "[archived copy]"}])


def test_a_dead_link_marked_fine_loses_its_archived_copy_on_every_listing_at_once(client, linking, admin_client):
    link = Link.objects.get(url="https://gone.example/page")
    failing_checks(link, (1, 5, 9))
    linkstore.classify_links(Link, LinkCheck, WHEN + timedelta(days=9))
    urls = visit(client, linking)
    everywhere(client, urls, present=[DEAD_WITH_COPY])
    response = admin_client.post("/admin/linkblog/link/", {"action": "mark_fine", "_selected_action": [link.pk]})
    assert response.status_code == 302
    everywhere(client, urls, absent=[DEAD_WITH_COPY])


def test_an_archived_copy_saved_by_the_archive_job_is_on_every_listing_at_once(client, linking, monkeypatch):
    link = Link.objects.get(url="https://gone.example/page")
    Link.objects.filter(pk=link.pk).update(archived_url="")
    failing_checks(link, (1, 5, 9))
    linkstore.classify_links(Link, LinkCheck, WHEN + timedelta(days=9))
    urls = visit(client, linking)
    everywhere(client, urls, absent=[ARCHIVED])
    monkeypatch.setattr("blogworks.linktasks.snapshot_of", lambda url: ARCHIVED)
    linkblog.upkeep.archive_post_links.call("blogmark", linking.pk)  # the task the signal handler enqueues
    everywhere(client, urls, present=[ARCHIVED])


# --- Drafts, scheduled posts, bulk writes ------------------------------------------------------------


def test_a_post_made_a_draft_leaves_every_listing_and_comes_back_when_published(client, post):
    urls = visit(client, post)
    post.is_draft = True
    post.save()
    permalink, *listed = urls
    everywhere(client, without(listed, "python"), absent=["The first title"])
    assert client.get(permalink).status_code == 404
    assert client.get("/tags/python/").status_code == 404  # only a draft carries it now
    post.is_draft = False
    post.title = "Published again"
    post.save()
    everywhere(client, urls, present=["Published again"], absent=["The first title", ">Draft<"])


def test_a_scheduled_post_appears_on_every_listing_at_its_moment_without_a_label(client, make, time_machine):
    time_machine.move_to(WHEN, tick=False)
    make.entry("Already out", tags=["web"], created=WHEN - timedelta(hours=1))
    later = make.entry("Out at ten", tags=["web"], created=WHEN + timedelta(hours=1))
    urls = listings(later)
    shown_now = [url for url in urls if url in ("/", "/tags/web/", "/atom/everything/", "/tags/web.atom")]
    everywhere(client, shown_now, absent=["Out at ten"])  # the others are 404s until then
    time_machine.move_to(WHEN + timedelta(hours=1, minutes=1), tick=False)
    everywhere(client, urls, present=["Out at ten"], absent=["Scheduled"])


def test_a_scheduled_post_listed_early_to_its_author_has_no_label_once_out(client, make, time_machine):
    """The API lists scheduled posts to their author before their moment (the permalink shows them to
    editors): the card rendered then says "Scheduled", which readers must never see once it is out."""
    time_machine.move_to(WHEN, tick=False)
    later = make.entry("Out at ten", tags=["web"], created=WHEN + timedelta(hours=1))
    staff = User.objects.create_superuser("editor", password="pw")
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(staff, 'tests')}"}
    assert "Out at ten" in client.get("/api/items", **bearer).content.decode()
    client.force_login(staff)
    assert "Scheduled" in client.get(later.get_absolute_url()).content.decode()
    client.logout()
    time_machine.move_to(WHEN + timedelta(hours=1, minutes=1), tick=False)
    everywhere(client, listings(later), present=["Out at ten"], absent=["Scheduled"])


@pytest.mark.parametrize("reader", ["a listing", "the permalink"])
def test_a_card_rendered_from_a_post_read_before_a_write_is_not_left_behind(client, post, monkeypatch, reader,
                                                                             django_capture_on_commit_callbacks):
    """A reader renders a card (or, on the permalink, the card's permalink) from the post as it was;
    before it stores it, a write commits and forgets the card. The reader's page may show the old
    title, but the stored card must not."""
    urls = visit(client, post)
    post.title = "The second title"
    post.save()
    if reader == "the permalink":
        pages(client, ["/"])  # the card is stored again, its permalink left for its own page
    read, written = linkblog.CARDS.load_posts, []

    def read_then_someone_writes(rows):
        posts = read(rows)
        if not written:
            with django_capture_on_commit_callbacks(execute=True):  # the write commits while the reader renders
                written.append(Entry.objects.get(pk=post.pk))
                written[0].title = "The third title"
                written[0].save()
            if reader == "the permalink":
                linkblog.CARDS.cards(rows)  # and another reader lists the post: its card is stored afresh
        return posts

    monkeypatch.setattr(linkblog.CARDS, "load_posts", read_then_someone_writes)
    pages(client, ["/" if reader == "a listing" else post.get_absolute_url()])
    monkeypatch.undo()
    everywhere(client, urls, present=["The third title"], absent=["The second title"])


def test_an_import_that_changes_a_post_is_on_every_listing_at_once(client, post, django_capture_on_commit_callbacks):
    urls = visit(client, post)
    record = {"type": "entry", "title": "The first title", "body": "Imported words.", "tags": ["web", "python"],
              "created": WHEN.isoformat(), "slug": post.slug}
    with django_capture_on_commit_callbacks(execute=True):  # the import announces itself once committed
        report = linkblog.import_posts(io.BytesIO(json.dumps(record).encode() + b"\n"))
    assert not report.failed
    everywhere(client, urls, present=["Imported words."])


def test_loaddata_forgets_the_cards_of_the_posts_it_restores(client, post, tmp_path):
    urls = visit(client, post)
    dumped = tmp_path / "posts.json"
    call_command("dumpdata", "linkblog.entry", "linkblog.tag", output=str(dumped), verbosity=0)
    Entry.objects.filter(pk=post.pk).update(title="Changed behind its back")  # no signal: the card is stale
    call_command("loaddata", str(dumped), verbosity=0)
    assert not PostCard.objects.filter(kind="entry", post_id=post.pk).exists()
    everywhere(client, urls, present=["The first title"])


# --- Per-user parts ----------------------------------------------------------------------------------


def test_the_edit_link_reaches_only_users_who_may_change_the_post(client, post, make):
    quote = make.quotation("Said once.", source="Someone", tags=["web"], created=WHEN - timedelta(hours=1))
    urls = visit(client, post)
    everywhere(client, urls, absent=['class="edit"', "<!--edit-->"])
    editor = User.objects.create_user("editor", password="pw", is_staff=True)
    editor.user_permissions.add(Permission.objects.get(codename="change_entry"))
    signed_in = Client()
    signed_in.force_login(editor)
    home = pages(signed_in, ["/"])["/"]
    assert f'href="/admin/linkblog/entry/{post.pk}/change/">Edit</a>' in home
    assert f"/admin/linkblog/quotation/{quote.pk}/change/" not in home  # no permission on quotations
    assert "<!--edit-->" not in home
    everywhere(client, urls, absent=['class="edit"'])  # readers after the editor: still none


def test_text_in_a_post_cannot_take_the_place_of_the_edit_link(client, make):
    post = make.entry("<!--edit--> a title", body="<!--edit--> in the body", tags=["web"], created=WHEN)
    staff = Client()
    staff.force_login(User.objects.create_superuser("author", "author@example.com", "pw"))
    for url, page in pages(staff, ["/", post.get_absolute_url()]).items():
        assert page.count('class="edit"') == 1, url
        assert page.index('class="edit"') > page.index(post.get_absolute_url() + '"><time'), url


def test_a_permalink_is_rendered_by_its_own_first_view_and_then_read_from_its_card(client, post, django_assert_max_num_queries):
    """Listings store a card without its permalink (rendering it would double their first view after
    a change); the permalink's first view renders it into the card, and later views read it."""
    pages(client, ["/"])
    card = PostCard.objects.get(kind="entry", post_id=post.pk)
    assert card.permalink == ""
    first = pages(client, [post.get_absolute_url()])[post.get_absolute_url()]
    card.refresh_from_db()
    assert "The first title" in json.loads(card.permalink)["article"]
    with django_assert_max_num_queries(9):
        assert pages(client, [post.get_absolute_url()])[post.get_absolute_url()] == first


def test_a_mention_approved_or_rejected_after_the_permalink_is_stored_shows_at_once(client, make):
    """The permalink's stored article keeps a slot for the replies and mentions, filled per request
    inside the post's h-entry (after its meta); the post's own text cannot take the slot's place."""
    post = make.entry("<!--responses--> a title", body="Words.", created=WHEN)
    permalink = post.get_absolute_url()
    assert "Someone Else" not in pages(client, [permalink])[permalink]
    said = "https://elsewhere.example/said"
    mention = linkblog.Mention.objects.create(post_kind="entry", post_id=post.pk, source=said, url=said, target=permalink,
                                              author_name="Someone Else", status=linkblog.Mention.APPROVED)
    page = pages(client, [permalink])[permalink]
    assert page.count("Someone Else") == 1
    assert page.index(permalink + '"><time') < page.index("Someone Else") < page.index("</article>")
    assert "&lt;!--responses--&gt; a title" in page
    mention.status = linkblog.Mention.REJECTED
    mention.save()
    assert "Someone Else" not in pages(client, [permalink])[permalink]


def test_text_in_a_post_cannot_take_the_place_of_a_search_results_title_or_excerpt(client, make):
    make.entry("<!--excerpt--> <!--title--> Marmots", body="`<!--title-->` `<!--excerpt-->` marmots *here*", created=WHEN)
    for _ in range(2):  # rendering the stored card, then reading it
        page = pages(client, ["/search/?q=marmots"])["/search/?q=marmots"]
        assert "&lt;!--excerpt--&gt; &lt;!--title--&gt; <mark>Marmots</mark></a></h3>" in page
        assert '<p class="excerpt">&lt;!--title--&gt; &lt;!--excerpt--&gt; <mark>marmots</mark> here</p>' in page


def test_the_first_view_after_writes_renders_new_cards_in_as_many_queries_for_3_posts_as_for_30(client, make):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from reader_helpers import add_posts

    def first_view_queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/").status_code == 200
        return len(captured)

    add_posts(make, 3)
    few = first_view_queries()
    add_posts(make, 30, offset=3)
    assert first_view_queries() == few
    assert PostCard.objects.count() == 33
