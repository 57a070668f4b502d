"""What a person sees, in a real Chromium against the app served over HTTP."""

import re

import pytest
from factories import at

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def django_tag_with_forty_posts(make):
    """40 posts of every kind tagged django, across 2023 and 2024, like a real tag page."""
    make.tag("django", description="The [Django](https://www.djangoproject.com/) web framework.")
    for number in range(40):
        created = at(2024 if number >= 18 else 2023, 1 + number % 12, 1 + number % 28, 9, number)
        kind = number % 4
        if kind == 0:
            make.entry(f"Entry number {number}", body=f"Opening paragraph {number}.\n\nMore text here.", tags=["django"], created=created)
        elif kind == 1:
            make.quotation(f"Quoted words {number}.", source=f"Speaker {number}", source_url="https://example.com/q", tags=["django"], created=created)
        elif kind == 2:
            make.blogmark(f"Plain link {number}", commentary="Worth a look.", tags=["django"], created=created)
        else:
            make.blogmark(
                f"Link with via {number}", link_url=f"https://example.com/{number}",
                via_url="https://news.ycombinator.com/", via_title="Hacker News", tags=["django", "python"], created=created,
            )


def test_a_reader_browses_a_tag_page(page, live_server, django_tag_with_forty_posts, artifacts):
    page.goto(f"{live_server.url}/tags/django/")
    assert page.locator("h1").inner_text() == "40 items tagged “django”"
    assert page.locator(".tag-description a").get_attribute("href") == "https://www.djangoproject.com/"
    assert page.locator("h2.year").all_inner_texts() == ["2024", "2023"]
    assert page.locator("article.post").count() == 30

    via = page.locator("a.via").first
    assert via.inner_text() == "via"
    assert via.get_attribute("title") == "Hacker News"
    assert via.get_attribute("href") == "https://news.ycombinator.com/"
    assert page.locator("article.entry .more a").first.inner_text() == "[... 6 words]"
    assert page.locator("article.quotation blockquote").first.is_visible()
    page.screenshot(path=str(artifacts / "tag-page.png"), full_page=True)

    page.get_by_role("link", name="older →").click()
    page.wait_for_url(re.compile(r"\?page=2$"))
    assert page.locator("article.post").count() == 10
    assert page.locator("h2.year").all_inner_texts() == ["2023"]
    assert page.get_by_role("link", name="← newer").is_visible()
    assert page.get_by_role("link", name="older →").count() == 0


def test_the_tag_page_fits_a_phone(browser, live_server, django_tag_with_forty_posts, artifacts):
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True)
    phone = context.new_page()
    phone.goto(f"{live_server.url}/tags/django/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    font_size = phone.evaluate("parseFloat(getComputedStyle(document.querySelector('article p')).fontSize)")
    assert font_size >= 15
    phone.screenshot(path=str(artifacts / "tag-page-phone.png"))
    context.close()


def choose_tag(page, field, name):
    """Pick a tag in the admin's autocomplete widget, as a person would."""
    page.locator(f".field-{field} .select2-selection").click()
    page.locator(".select2-search__field").fill(name)
    page.locator(".select2-results__option", has_text=name).first.click()


def test_the_author_adds_a_blogmark_in_the_admin_and_finds_it_on_both_tag_pages(page, live_server, admin_user, make):
    make.tag("django")
    make.tag("python")
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/linkblog/blogmark/add/")
    page.fill("#id_link_url", "https://example.com/great-article")
    page.locator("#id_link_title").press_sequentially("A great article about Django and Python")
    assert page.input_value("#id_slug") == "a-great-article-about-django-and-python"
    page.fill("#id_commentary", "I *really* liked this one.")
    page.fill("#id_via_url", "https://news.ycombinator.com/")
    page.fill("#id_via_title", "Hacker News")
    choose_tag(page, "tags", "django")
    choose_tag(page, "tags", "python")
    page.click("input[name=_save]")
    assert "was added successfully" in page.locator(".messagelist").inner_text()

    for tag in ["django", "python"]:
        page.goto(f"{live_server.url}/tags/{tag}/")
        assert page.locator("h1").inner_text() == f"1 item tagged “{tag}”"
        link = page.get_by_role("link", name="A great article about Django and Python")
        assert link.get_attribute("href") == "https://example.com/great-article"
        assert page.locator("article.blogmark em").inner_text() == "really"
