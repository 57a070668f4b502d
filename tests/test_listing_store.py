"""The listing store (blogworks/listing.py) stays right after every way of writing a post or a tag.

Home, tag pages, feeds and /api/items read the store, not the posts: after each write below, its rows
and tallies must be exactly what the posts say (compared with a recount from the posts themselves),
and readers must see the change. Run on SQLite and, with --postgres, on PostgreSQL.
"""

import importlib
import io
import json
from collections import Counter
from itertools import combinations
from datetime import timedelta, timezone as dt_timezone
from unittest import mock

import pytest
from django.apps import apps
from django.core.management import call_command
from django.utils import timezone

from blogworks.listing import count_everything, count_pair, published_by_month
from factories import at
from linkblog import (LISTING, POST_MODELS, ApiToken, Entry, Listed, ListedTag, MonthTally, PairTally, Tag, Tally, export,
                      import_posts, readable_tags)

pytestmark = pytest.mark.django_db


def truth():
    """What the store should hold, recounted from the posts: rows, tag rows, published counts."""
    rows, tag_rows = set(), set()
    for kind, model in POST_MODELS.items():
        for post in model.objects.prefetch_related("tags"):
            rows.add((kind, post.pk, post.created, post.is_draft))
            tag_rows |= {(tag.pk, kind, post.pk, post.created, post.is_draft) for tag in post.tags.all()}
    now = timezone.now()
    counts = Counter(tag_id for tag_id, _, _, created, is_draft in tag_rows if not is_draft and created <= now)
    return rows, tag_rows, counts


def shared_truth():
    """How many published posts each two tags share, recounted from the posts: {(tag, tag): count}."""
    shared = Counter()
    for model in POST_MODELS.values():
        for post in model.objects.published().prefetch_related("tags"):
            shared.update(combinations(sorted(tag.pk for tag in post.tags.all()), 2))
    return shared


def stored():
    rows = set(Listed.objects.values_list("kind", "post_id", "created", "is_draft"))
    tag_rows = set(ListedTag.objects.values_list("tag_id", "kind", "post_id", "created", "is_draft"))
    return rows, tag_rows


def assert_store_right():
    rows, tag_rows, counts = truth()
    assert stored() == (rows, tag_rows)
    assert {tag.pk: tag.post_count for tag in readable_tags()} == +counts
    published = sum(1 for _, _, created, is_draft in rows if not is_draft and created <= timezone.now())
    assert count_everything(LISTING, timezone.now()) == published
    tags = Tag.objects.in_bulk()
    pairs = {(pair.tag_id, pair.other_id) for pair in PairTally.objects.all()} | set(shared_truth())
    shared = {pair: count_pair(LISTING, [tags[pk] for pk in pair], timezone.now()) for pair in pairs}
    assert +Counter(shared) == shared_truth()
    assert_months_right(rows)


def assert_months_right(rows):
    """The month tallies hold each UTC month's non-draft rows and newest date, and the archives'
    counts of published posts per month are what the posts say."""
    now, month = timezone.now(), lambda created: created.astimezone(dt_timezone.utc).date().replace(day=1)
    listed = [created for _, _, created, is_draft in rows if not is_draft]
    tallies = {m: (sum(1 for created in listed if month(created) == m), max(created for created in listed if month(created) == m))
               for m in {month(created) for created in listed}}
    assert {tally.month: (tally.listed, tally.newest) for tally in MonthTally.objects.all()} == tallies
    published = Counter((month(created).year, month(created).month) for created in listed if created <= now)
    assert published_by_month(LISTING, now) == sorted((year, number, count) for (year, number), count in published.items())


@pytest.fixture
def blog(make):
    make.entry("Published entry", tags=["python", "django"], created=at(2024, 1, 1))
    make.blogmark("Published link", tags=["python"], created=at(2024, 2, 1))
    make.quotation("Quoted words", tags=["django"], created=at(2024, 3, 1))
    make.entry("A draft", tags=["python", "secret"], is_draft=True, created=at(2024, 4, 1))
    assert_store_right()


def test_saving_editing_and_deleting_posts(make, blog, client):
    post = make.blogmark("Brand new", tags=["python", "new"])
    assert_store_right()
    assert "Brand new" in client.get("/tags/new/").content.decode()
    post.created = at(2020, 5, 5)
    post.save()
    assert_store_right()
    draft = Entry.objects.get(title="A draft")
    draft.is_draft = False  # a draft published
    draft.save()
    assert_store_right()
    assert "A draft" in client.get("/tags/secret/").content.decode()
    post.delete()
    assert_store_right()
    assert client.get("/tags/new/").status_code == 404
    Entry.objects.filter(title="Published entry").delete()  # a queryset delete (the admin's action)
    assert_store_right()


def test_tags_added_and_removed_from_either_side(make, blog):
    entry = Entry.objects.get(title="Published entry")
    entry.tags.add(make.tag("orm"))
    assert_store_right()
    entry.tags.remove(Tag.objects.get(tag="python"))
    assert_store_right()
    entry.tags.clear()
    assert_store_right()
    orm = Tag.objects.get(tag="orm")
    orm.entry_set.add(entry)
    assert_store_right()
    orm.entry_set.remove(entry)
    assert_store_right()
    Tag.objects.get(tag="django").quotation_set.clear()
    assert_store_right()
    Tag.objects.get(tag="python").delete()
    assert_store_right()


def test_a_post_scheduled_for_a_later_month_counts_in_the_archives_at_its_moment(make, blog, client):
    moment = timezone.now() + timedelta(days=45)
    make.entry("Next month", tags=["python"], created=moment)
    make.entry("Tomorrow", tags=["python"], created=timezone.now() + timedelta(days=1))
    make.entry("The last month there is", tags=["python"], created=at(9999, 12, 30))
    assert_store_right()
    label = moment.astimezone(dt_timezone.utc).strftime("%b")
    assert f'/{moment.year}/{label}/"' not in client.get("/archive/").content.decode()
    with mock.patch("django.utils.timezone.now", return_value=moment + timedelta(seconds=1)):
        assert_store_right()
        assert f'/{moment.year}/{label}/"' in client.get("/archive/").content.decode()


def test_a_scheduled_post_counts_at_its_moment_without_a_write(make, blog, client):
    moment = timezone.now() + timedelta(days=1)
    make.entry("Coming soon", tags=["python", "django", "later"], created=moment)
    assert_store_right()
    assert client.get("/tags/later/").status_code == 404
    assert "1 item tagged" in client.get("/tags/django+python/").content.decode()
    python_before = readable_tags().get(tag="python").post_count
    with mock.patch("django.utils.timezone.now", return_value=moment + timedelta(seconds=1)):
        assert_store_right()
        assert readable_tags().get(tag="python").post_count == python_before + 1
        assert "Coming soon" in client.get("/tags/later/").content.decode()
        assert "2 items tagged" in client.get("/tags/django+python/").content.decode()
        assert "Coming soon" in client.get("/").content.decode()


def test_the_api_writes_renames_and_merges(make, blog, client, django_user_model):
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "secret-pw")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user, 'tests')}"}
    send = lambda method, url, payload=None: getattr(client, method)(
        url, json.dumps(payload or {}), content_type="application/json", **headers)
    created = send("post", "/api/entries", {"title": "From the API", "body": "Text", "tags": ["api", "python"]})
    assert created.status_code == 201, created.content
    assert_store_right()
    pk = created.json()["id"]
    assert send("patch", f"/api/entries/{pk}", {"tags": ["django"], "is_draft": True}).status_code == 200
    assert_store_right()
    assert send("post", "/api/tags/django/rename", {"to": "web"}).status_code == 200
    assert_store_right()
    assert send("post", "/api/tags/web/merge", {"into": "python"}).status_code == 200
    assert_store_right()
    assert "Quoted words" in client.get("/tags/python/").content.decode()
    assert send("delete", f"/api/entries/{pk}").status_code == 204
    assert_store_right()


def test_the_admin_saves_a_post_and_its_tags(admin_client, make, blog):
    python = Tag.objects.get(tag="python")
    response = admin_client.post("/admin/linkblog/blogmark/add/", {
        "link_url": "https://example.com/a", "link_title": "Through the admin", "slug": "", "commentary": "",
        "via_url": "", "via_title": "", "tags": [python.pk], "created_0": "2024-09-25", "created_1": "10:00:00",
    })
    assert response.status_code == 302
    assert_store_right()


def test_an_import_creates_and_updates_posts_in_bulk(make, blog):
    exported = "".join(chunk.decode() if isinstance(chunk, bytes) else chunk for chunk in export())
    lines = [json.loads(line) for line in exported.splitlines()]
    for record in lines:
        if record.get("type") == "entry" and record.get("title") == "A draft":
            record["is_draft"] = False
            record["tags"] = ["imported"]
    lines.append({"type": "blogmark", "link_url": "https://example.com/new", "link_title": "Imported link",
                  "tags": ["imported", "python"], "created": "2023-06-01T10:00:00Z"})
    data = "".join(json.dumps(record) + "\n" for record in lines).encode()
    report = import_posts(io.BytesIO(data))
    assert not report.failed, report.problems
    assert_store_right()
    assert readable_tags().get(tag="imported").post_count == 2


def test_loaddata_restores_the_store(make, blog, tmp_path):
    dump = tmp_path / "posts.json"
    call_command("dumpdata", "linkblog.tag", "linkblog.entry", "linkblog.blogmark", "linkblog.quotation",
                 output=str(dump))
    for model in POST_MODELS.values():
        model.objects.all().delete()
    Tag.objects.all().delete()
    assert stored() == (set(), set())
    call_command("loaddata", str(dump), verbosity=0)
    assert_store_right()


def test_the_migration_fills_the_store_of_an_existing_blog(make, blog):
    for model in (Listed, ListedTag, Tally):
        model.objects.all().delete()
    migration = importlib.import_module("migrations.0011_listing_store")
    migration.fill_listing(apps, None)
    assert_store_right()


def test_the_migration_counts_the_months_of_an_existing_blog(make, blog):
    make.blogmark("Years earlier", tags=["python"], created=at(2009, 7, 31))
    MonthTally.objects.all().delete()
    migration = importlib.import_module("migrations.0019_monthtally")
    migration.fill_month_tallies(apps, None)
    assert_store_right()


def test_the_migration_counts_the_pairs_of_an_existing_blog(make, blog):
    make.entry("Three tags", tags=["python", "django", "orm"], created=at(2024, 5, 1))
    PairTally.objects.all().delete()
    migration = importlib.import_module("migrations.0013_pair_tally")
    migration.fill_pair_tallies(apps, None)
    assert PairTally.objects.count() == 3  # python+django, python+orm, django+orm: not the draft's python+secret
    assert_store_right()


def test_listing_rows_are_the_published_posts_in_order_however_they_are_read(make, django_assert_num_queries):
    """listing_rows() (home, tag pages, feeds, the API, the random post) in any slice, from either
    end, counted and indexed, is exactly the published posts carrying the tags, newest first: posts
    of one moment by id then kind, drafts and scheduled posts left out, for any number of tags."""
    from django.db.models import Q

    from blogworks.listing import listing_rows
    from linkblog import PostQuerySet

    kinds = [make.entry, make.blogmark, make.quotation]
    for number in range(40):
        tags = [name for name, every in (("python", 2), ("django", 3), ("sqlite", 5)) if number % every == 0]
        same_moment = at(2020, 1, 1 + number // 4)  # four posts a day share a moment
        kinds[number % 3](f"Post {number}", tags=tags or ["other"], created=same_moment,
                          is_draft=number % 7 == 0)
    make.entry("Scheduled", tags=["python", "django", "sqlite"], created=timezone.now() + timedelta(days=3))

    def expected(names, kinds=None):
        rows = [(kind, post.pk, post.created) for kind, model in POST_MODELS.items() if kinds is None or kind in kinds
                for post in model.objects.published().prefetch_related("tags")
                if set(names) <= {tag.tag for tag in post.tags.all()}]
        return [{"kind": kind, "pk": pk, "created": created} for kind, pk, created in sorted(rows, key=lambda row: (row[2], row[1], row[0]), reverse=True)]

    for names, kinds in [([], None), ([], ["entry", "quotation"]), (["python"], None), (["python", "django"], None),
                         (["sqlite", "python", "django"], None), (["python", "sqlite"], ["blogmark"])]:
        tags = readable_tags().filter(tag__in=names)
        condition = PostQuerySet.published_filter() & (Q(kind__in=kinds) if kinds else Q())
        rows, want = listing_rows(LISTING, condition, list(tags)), expected(names, kinds)
        assert want, names
        assert rows.count() == len(want)
        assert rows[0 : len(want) + 5] == want
        assert rows[2:7] == want[2:7] and rows[len(want) - 1] == want[-1]
        assert rows.reverse()[0:3] == want[::-1][0:3]
        assert rows[len(want) : len(want) + 3] == []
        with pytest.raises(IndexError):
            rows[len(want)]
    # A slice inside one already read is not read again (a tag page's related tags count its first page).
    rows = listing_rows(LISTING, PostQuerySet.published_filter(), [])
    first_page = rows[0:30]
    with django_assert_num_queries(0):
        assert rows[0:10] == first_page[0:10] and rows[5:30] == first_page[5:30]
    few = listing_rows(LISTING, PostQuerySet.published_filter(), list(readable_tags().filter(tag__in=["python", "sqlite"])))
    all_of_them = few[0:30]  # fewer than asked for: the read reached the end
    with django_assert_num_queries(0):
        assert 0 < len(all_of_them) < 30 and few[0:100] == all_of_them and few[2:50] == all_of_them[2:]
