"""The benchmark's own parts: the data set it measures, and the ceiling view that production never routes."""

import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import dataset  # noqa: E402

import linkblog  # noqa: E402


@pytest.fixture(scope="module")
def records():
    return list(dataset.generate(4000, seed=3))


def test_the_data_set_mixes_kinds_like_a_link_blog(records):
    kinds = Counter(record["kind"] for record in records)
    assert 0.72 < kinds["blogmark"] / len(records) < 0.78
    assert 0.17 < kinds["entry"] / len(records) < 0.23
    assert 0.03 < kinds["quotation"] / len(records) < 0.07
    drafts = sum(record["is_draft"] for record in records)
    assert 0 < drafts < len(records) * 0.02


def test_entries_are_several_paragraphs_of_markdown(records):
    bodies = [record["body"] for record in records if record["kind"] == "entry"]
    assert min(body.count("\n\n") for body in bodies) >= 2
    assert any("```python" in body for body in bodies)
    assert any("\n- " in body for body in bodies)
    assert any("](https://" in body for body in bodies)


def test_tags_have_a_long_tail_and_one_big_tag(records):
    uses = Counter(tag for record in records for tag in record["tags"])
    assert len(dataset.tag_names()) == len(set(dataset.tag_names())) == 5000
    (big, big_count), *_ = uses.most_common()
    assert big_count >= dataset.BIG_TAG_POSTS
    # A long tail: most tags are rare, a few are common.
    assert sum(1 for count in uses.values() if count <= 3) > len(uses) / 2


def test_dates_span_twenty_years_oldest_first(records):
    created = [record["created"] for record in records]
    assert created == sorted(created)
    assert created[-1] - created[0] > timedelta(days=365 * 19)


def test_slugs_are_unique_per_kind_and_day(records):
    keys = [(record["kind"], record["created"].date(), record["slug"]) for record in records]
    assert len(keys) == len(set(keys))


def test_the_same_seed_gives_the_same_posts():
    assert list(dataset.generate(50, seed=9)) == list(dataset.generate(50, seed=9))
    assert list(dataset.generate(50, seed=9)) != list(dataset.generate(50, seed=10))


@pytest.mark.django_db(transaction=True)
def test_written_posts_are_rendered_tagged_and_shown(client):
    written = dataset.write(dataset.generate(60, seed=5), batch=25)

    assert written == 60
    stored = [post for model in linkblog.POST_MODELS.values() for post in model.objects.all()]
    assert len(stored) == 60
    assert all(post.html for post in stored if post.kind != "blogmark" or post.commentary)
    big_tag = linkblog.Tag.objects.get(tag=dataset.tag_names()[0])
    published = [post for post in stored if not post.is_draft and big_tag in post.tags.all()]
    page = client.get(f"/tags/{big_tag.tag}/")
    assert page.status_code == 200
    assert f"{len(published)} item" in page.content.decode()


def test_the_benchmark_view_is_not_routed_without_linkblog_bench(client):
    # The ceiling view exists for bench/run.py only (LINKBLOG_BENCH=1); a deployment never has it.
    assert client.get("/bench/hello/").status_code == 404
