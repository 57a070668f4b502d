"""Writing in a real Chromium against the live server: the tag box, the live preview, a scheduled
post appearing when the clock reaches it, and a draft's secret link opened logged out.

The live server is a thread of this process, so time-machine moves its clock too: the test schedules
a post an hour ahead and then moves "now" past it, with no sleeping and no setting made for tests."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from linkblog import Entry

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def console_errors(page):
    """Content-Security-Policy violations the console reports: the test asserts there are none."""
    errors = []
    page.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None)
    return errors


def log_in(page, live_server):
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def type_in_tag_box(page, text):
    """Type into the tags box and press Enter once the list shows the answer for the whole text, as a
    person who reads the list before choosing would.

    Waiting for the response alone is not enough: opening the box lists every tag, and for a moment
    after the answer arrives that older list (alphabetical) is still on screen with its first row
    highlighted. So wait until the highlighted row is the answer's first row (or the new tag)."""
    page.locator(".field-tags .select2-selection").click()
    with page.expect_response(lambda response: "/admin/autocomplete/" in response.url and f"term={text}&" in response.url) as answer:
        page.locator(".select2-search__field").press_sequentially(text)
    results = answer.value.json()["results"]
    first = results[0]["text"] if results else f"{text} (new tag)"
    exactly_first = re.compile(rf"^\s*{re.escape(first)}\s*$")
    page.locator(".select2-results__option--highlighted").filter(has_text=exactly_first).wait_for()
    page.keyboard.press("Enter")


def test_typing_a_tag_prefix_and_enter_picks_the_most_used_tag_and_new_tags_are_created(page, live_server, admin_user, make, console_errors):
    for name in ["activepython", "pythonanywhere", "python"]:
        make.tag(name)
    for number in range(3):
        make.entry(f"Python post {number}", tags=["python"])
    make.entry("Anywhere post", tags=["pythonanywhere"])
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/linkblog/entry/add/")
    page.fill("#id_title", "Tagged by keyboard")
    page.fill("#id_body", "Text.")
    type_in_tag_box(page, "pyth")
    type_in_tag_box(page, "brand-new")
    chosen = page.locator(".field-tags .select2-selection__choice").all_inner_texts()
    assert [text.strip("×\n ") for text in chosen] == ["python", "brand-new (new tag)"]
    page.click("input[name=_save]")
    assert "was added successfully" in page.locator(".messagelist").inner_text()
    assert sorted(Entry.objects.get(title="Tagged by keyboard").tags.values_list("tag", flat=True)) == ["brand-new", "python"]
    assert not console_errors


def test_the_preview_changes_as_the_author_types(page, live_server, admin_user, console_errors, artifacts):
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/linkblog/entry/add/")
    preview = page.locator(".field-body .markdown-preview")
    page.locator("#id_body").press_sequentially("Hello *world*")
    preview.locator("em", has_text="world").wait_for()
    page.locator("#id_body").press_sequentially("\n\n- a [link](https://example.com/) <script>x</script>")
    preview.locator("li a[href='https://example.com/']").wait_for()
    assert preview.locator("script").count() == 0
    page.screenshot(path=str(artifacts / "admin-preview.png"))
    assert not console_errors


def test_a_scheduled_post_appears_when_its_time_comes(page, browser, live_server, admin_user, time_machine, console_errors):
    start = timezone.now().replace(microsecond=0)
    time_machine.move_to(start, tick=True)
    moment = start + timedelta(hours=1)
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/linkblog/entry/add/")
    page.fill("#id_title", "Published later")
    page.fill("#id_body", "Scheduled text.")
    page.fill("#id_created_0", moment.strftime("%Y-%m-%d"))
    page.fill("#id_created_1", moment.strftime("%H:%M:%S"))
    page.click("input[name=_save]")
    assert "Scheduled" in page.locator("td.field-status").first.inner_text()

    reader = browser.new_context().new_page()
    reader.goto(f"{live_server.url}/")
    assert reader.get_by_text("Published later").count() == 0
    reader.goto(f"{live_server.url}/")  # now from the page cache
    assert reader.get_by_text("Published later").count() == 0

    time_machine.move_to(moment + timedelta(seconds=1), tick=True)
    # A reader arriving now (Chromium's own clock did not move, so the first reader's browser may
    # keep its copy for the max-age it was given, a minute at most).
    reader.context.close()
    reader = browser.new_context().new_page()
    reader.goto(f"{live_server.url}/")
    assert reader.get_by_role("link", name="Published later").is_visible()
    reader.goto(f"{live_server.url}/atom/everything/")
    assert "Published later" in reader.content()
    reader.context.close()
    assert not console_errors


def test_a_shared_draft_link_opens_logged_out(page, browser, live_server, admin_user, make, console_errors, artifacts):
    draft = make.entry("Work in progress", body="Not *finished*.", is_draft=True)
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/linkblog/entry/")
    page.locator(f"input[name=_selected_action][value='{draft.pk}']").check()
    page.select_option("select[name=action]", "share_preview")
    page.click("button[name=index]")
    page.goto(f"{live_server.url}/admin/linkblog/entry/{draft.pk}/change/")
    link = page.locator(".field-preview_link a").get_attribute("href")
    assert "/preview/" in link

    stranger = browser.new_context().new_page()
    stranger.goto(link.replace("http://127.0.0.1:8000", live_server.url))
    assert stranger.locator(".draft-banner").inner_text().startswith("Draft")
    assert stranger.locator("article em").inner_text() == "finished"
    assert stranger.locator("meta[name=robots]").get_attribute("content") == "noindex, nofollow"
    stranger.screenshot(path=str(artifacts / "draft-preview.png"))
    stranger.goto(f"{live_server.url}/")
    assert stranger.get_by_text("Work in progress").count() == 0
    stranger.context.close()
    assert not console_errors
