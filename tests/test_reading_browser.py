"""Every kind of page, with twenty-year-old content, in a real Chromium at phone and desktop widths:
nothing scrolls sideways and the Content-Security-Policy blocks nothing (issue 14)."""

import pytest
from factories import at

pytestmark = pytest.mark.django_db(transaction=True)

LONG_URL = "https://example.com/" + "/".join(f"a-very-long-path-segment-{n}" for n in range(12)) + "?query=" + "x" * 60
WIDE_TABLE = "\n".join([
    "| " + " | ".join(f"Column heading {n}" for n in range(9)) + " |",
    "|" + "---|" * 9,
    *["| " + " | ".join(f"value-{row}-{n}-wide" for n in range(9)) + " |" for row in range(4)],
])
OLD_BODY = f"""He said "it's done" -- and it was. Straight quotes, a dash -- and an em dash --- from 2003.

![An old photo](http://images.example.test/2003/photo.jpg)

{WIDE_TABLE}

The address was <{LONG_URL}> and nobody could read it.

    def a_function_with_a_very_long_line_of_code(): return "{'x' * 120}"
"""
LONG_TAG = "a-tag-name-that-is-as-long-as-a-tag-may-be-sixty-four-characters"


@pytest.fixture
def old_blog(make):
    """A blog of the 2000s: http images, a wide table, straight quotes, very long URLs and tags."""
    tags = ["django", "python", LONG_TAG, *[f"topic-{n}" for n in range(12)]]
    posts = {
        "entry": make.entry("Things I learned building a blog in 2003", body=OLD_BODY, tags=tags, created=at(2003, 5, 1)),
        "blogmark": make.blogmark(
            "A link to an article with a very long address", link_url=LONG_URL, via_url=LONG_URL, via_title="Someone",
            commentary=f'"Worth reading" -- the first sentence runs on. ![chart](http://images.example.test/chart.png)\n\n{WIDE_TABLE}',
            tags=tags, created=at(2008, 1, 5),
        ),
        "quotation": make.quotation(
            f'"The best way to predict the future is to invent it" -- {LONG_URL}', source="Alan Kay", source_url=LONG_URL,
            tags=tags, created=at(2012, 7, 9),
        ),
    }
    for number in range(8):
        make.entry(f"Later post {number}", body="A \"quoted\" word -- and more.", tags=["django", f"topic-{number}"], created=at(2020 + number % 3, 2, 1 + number))
    return posts


def pages_of_every_kind(posts):
    return {
        "home": "/",
        "tag": "/tags/django/",
        "tag-list": "/tags/",
        "tag-list-all": "/tags/?all=1",
        "entry": posts["entry"].get_absolute_url(),
        "blogmark": posts["blogmark"].get_absolute_url(),
        "quotation": posts["quotation"].get_absolute_url(),
        "archive": "/archive/",
        "archive-month": "/2008/Jan/",
        "search": "/search/?q=address",
    }


def open_tab(browser, live_server, width, height, **options):
    """A tab that may reach only the test server, and that records every CSP violation it sees."""
    context = browser.new_context(viewport={"width": width, "height": height}, **options)
    context.route(lambda url: not url.startswith(live_server.url), lambda route: route.abort())
    context.add_init_script(
        "window.cspViolations = [];"
        "document.addEventListener('securitypolicyviolation', e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    tab = context.new_page()
    tab.console_errors = []
    tab.on("console", lambda message: tab.console_errors.append(message.text) if "Content Security Policy" in message.text else None)
    return context, tab


@pytest.mark.parametrize("width, height, device", [(390, 844, "phone"), (1280, 900, "desktop")])
def test_no_page_scrolls_sideways_or_breaks_the_csp(browser, live_server, old_blog, artifacts, width, height, device):
    options = {"device_scale_factor": 2, "is_mobile": True, "has_touch": True} if device == "phone" else {}
    context, tab = open_tab(browser, live_server, width, height, **options)
    problems = []
    for name, path in pages_of_every_kind(old_blog).items():
        response = tab.goto(live_server.url + path)
        assert response.status == 200, path
        tab.wait_for_load_state("load")
        scroll, client = tab.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        if scroll > client:
            problems.append(f"{path} scrolls sideways at {width}px: {scroll} > {client}")
        violations = tab.evaluate("window.cspViolations") + tab.console_errors
        if violations:
            problems.append(f"{path}: CSP violations {violations}")
        tab.console_errors.clear()
        tab.screenshot(path=str(artifacts / f"reading-{name}-{device}.png"), full_page=True)
    context.close()
    assert not problems, problems


def test_old_posts_read_well_in_a_browser(browser, live_server, old_blog, artifacts):
    context, tab = open_tab(browser, live_server, 390, 844, device_scale_factor=2, is_mobile=True, has_touch=True)
    tab.goto(live_server.url + old_blog["entry"].get_absolute_url())
    body = tab.locator("article .body").inner_text()
    assert "He said “it’s done” – and it was." in body and "em dash — from" in body
    assert tab.locator("article img").get_attribute("src") == "https://images.example.test/2003/photo.jpg"
    table = tab.locator("article table")
    assert table.evaluate("el => el.scrollWidth > el.clientWidth")  # the table scrolls in its own box
    assert table.evaluate("el => el.getBoundingClientRect().right") <= 390

    tab.goto(live_server.url + "/tags/django/")
    first_post = tab.locator("article.post").first.bounding_box()
    assert first_post["y"] < tab.locator(".related-tags").bounding_box()["y"]  # on a phone the posts lead
    assert first_post["y"] < 844 / 2
    run_in = tab.locator("article.blogmark .run-in").first
    title_last_line = run_in.locator(".link").evaluate("el => [...el.getClientRects()].pop().top")
    commentary_first_line = run_in.locator(".body p").first.evaluate("el => el.getClientRects()[0].top")
    assert abs(title_last_line - commentary_first_line) < 5  # the commentary runs on from the title's line
    context.close()


def test_the_tag_search_button_is_quieter_than_the_heading(page, live_server, old_blog):
    page.goto(live_server.url + "/tags/django/")
    button = page.locator(".tag-search button")
    background = button.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)")
    size = "el => parseFloat(getComputedStyle(el).fontSize)"
    assert button.evaluate(size) < page.locator("h1").evaluate(size) / 1.5
