"""Import and export in the admin, and the bookmarklet, as the author uses them."""

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from blogworks.rules import web_url
from linkblog import Blogmark, Entry, Tag

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parent / "data"
TOOL_URLS = ["/admin/linkblog/import/", "/admin/linkblog/export/?format=ndjson", "/admin/linkblog/bookmarklet/"]


def upload(admin_client, name, **options):
    data = {"file": SimpleUploadedFile(name, (DATA / name).read_bytes()), **options}
    return admin_client.post("/admin/linkblog/import/", data)


@pytest.mark.parametrize("url", TOOL_URLS)
def test_the_tools_are_for_staff_only(client, django_user_model, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={quote(url)}"
    django_user_model.objects.create_user("reader", password="pw")
    client.login(username="reader", password="pw")
    assert client.get(url).status_code == 302


def test_the_admin_index_links_to_the_tools(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert '<a href="/admin/linkblog/import/">Import and export</a>' in html
    assert '<a href="/admin/linkblog/bookmarklet/">Bookmarklet</a>' in html
    assert 'href="/admin/linkblog/blogmark/"' in html  # the usual model list is still there


def test_the_admin_still_answers_its_own_urls(admin_client):
    assert admin_client.get("/admin/linkblog/").status_code == 200
    assert admin_client.get("/admin/linkblog/nothing-here/").status_code == 404


def test_uploading_a_file_imports_it_and_shows_the_summary(admin_client):
    response = upload(admin_client, "blog.ndjson")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Imported." in html
    assert "<tr><th scope=\"row\">entry</th><td>3</td><td>0</td><td>0</td><td>0</td></tr>" in html
    assert Entry.objects.count() == 3 and Tag.objects.count() == 4


def test_uploading_bookmarks_with_folders_as_tags_lists_what_was_left_out(admin_client):
    html = upload(admin_client, "bookmarks-firefox.html", format="netscape", folders_as_tags="on").content.decode()
    assert "line 25: is not a web link (javascript:), left out" in html
    csp = Blogmark.objects.get(link_url="https://developer.mozilla.org/en-US/docs/Web/HTTP/CSP")
    assert sorted(csp.tags.values_list("tag", flat=True)) == ["bookmarks-toolbar", "csp", "security", "web-dev"]


def test_a_bad_upload_is_refused_with_its_line_and_nothing_is_written(admin_client):
    response = upload(admin_client, "broken.ndjson")
    assert response.status_code == 400
    html = response.content.decode()
    assert "1 bad record: nothing was imported." in html
    assert "line 3: is not valid JSON: Invalid control character at (column 103)" in html
    assert not Blogmark.objects.exists() and not Tag.objects.exists()


def test_an_unreadable_upload_is_a_message_not_a_server_error(admin_client):
    response = upload(admin_client, "bookmarks-latin1-undeclared.html")
    assert response.status_code == 400
    assert "the bookmarks file is not valid utf-8 text (byte 0xe7 on line 5)" in response.content.decode()
    response = admin_client.post("/admin/linkblog/import/", {})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_skip_bad_and_dry_run_work_from_the_admin(admin_client):
    html = upload(admin_client, "missing-field.ndjson", dry_run="on", skip_bad="on").content.decode()
    assert "Dry run: nothing was written." in html
    assert "line 4: has a bad link_url: “javascript:alert(document.cookie)” is not a web link" in html
    assert not Entry.objects.exists()
    upload(admin_client, "missing-field.ndjson", skip_bad="on")
    assert Entry.objects.count() == 1 and Blogmark.objects.count() == 1


def test_an_export_downloads_with_or_without_drafts(admin_client):
    upload(admin_client, "blog.ndjson")
    response = admin_client.get("/admin/linkblog/export/?format=ndjson&drafts=on")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="linkblog-')
    everything = b"".join(response.streaming_content).decode()
    assert everything.count("\n") == 4 + 6 and "draft-notes" in everything
    published = b"".join(admin_client.get("/admin/linkblog/export/?format=ndjson").streaming_content).decode()
    assert "draft-notes" not in published and published.count("\n") == 4 + 5
    bookmarks = admin_client.get("/admin/linkblog/export/?format=netscape&drafts=on")
    assert b"".join(bookmarks.streaming_content).startswith(b"<!DOCTYPE NETSCAPE-Bookmark-file-1>")
    assert admin_client.get("/admin/linkblog/export/?format=csv").status_code == 400


def test_blog_this_finds_a_link_as_it_was_typed_and_links_only_web_addresses(admin_client, make):
    make.blogmark("Books", link_url=web_url("https://bücher.example/a page?q=ä"))  # stored as a browser sends it
    html = admin_client.get("/admin/linkblog/blog-this/", {"url": "https://bücher.example/a page?q=ä"}).content.decode()
    assert "Already blogged" in html and "Books" in html
    html = admin_client.get("/admin/linkblog/blog-this/", {"url": "javascript:alert(document.domain)"}).content.decode()
    assert 'href="javascript:' not in html and "<p>javascript:alert(document.domain)</p>" in html


# --- The bookmarklet, in Chromium ---------------------------------------------------------------

ARTICLE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>An article worth linking — Example</title></head>
<body><h1>An article</h1><p id="quote">SQLite is not a toy database &amp; it scales.</p><p>Other text.</p></body></html>
"""


@pytest.fixture
def article_server(tmp_path):
    """Someone else's web page, served over HTTP from a local server."""
    (tmp_path / "article.html").write_text(ARTICLE, encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=True)
def test_the_bookmarklet_offers_a_blogmark_and_a_quotation_and_warns_of_a_duplicate(page, live_server, admin_user, article_server, artifacts):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    page.click("text=Bookmarklet")
    page.screenshot(path=artifacts / "bookmarklet-page.png")
    href = page.get_attribute("#bookmarklet", "href")
    assert href.startswith("javascript:")
    assert page.locator("script:not([src])").count() == 0  # the page itself needs no inline script

    def blog_this():
        page.goto(f"{article_server}/article.html")
        page.evaluate("""() => {
            const range = document.createRange();
            range.selectNodeContents(document.getElementById("quote"));
            getSelection().removeAllRanges();
            getSelection().addRange(range);
        }""")
        with page.expect_navigation():
            page.evaluate(href.removeprefix("javascript:"))
        assert page.url.startswith(f"{live_server.url}/admin/linkblog/blog-this/?")

    blog_this()
    assert page.locator(".already-blogged").count() == 0
    page.click("#add-quotation")
    assert page.input_value("#id_quotation") == "SQLite is not a toy database & it scales."
    assert page.input_value("#id_source") == "An article worth linking — Example"
    assert page.input_value("#id_source_url") == f"{article_server}/article.html"
    assert page.get_by_text("Currently:").count() == 0

    blog_this()
    page.click("#add-blogmark")
    assert page.url.startswith(f"{live_server.url}/admin/linkblog/blogmark/add/?")
    assert page.get_by_text("Currently:").count() == 0  # an add form, not an edit
    assert page.input_value("#id_link_url") == f"{article_server}/article.html"
    assert page.input_value("#id_link_title") == "An article worth linking — Example"
    assert page.input_value("#id_commentary") == "SQLite is not a toy database & it scales."
    page.screenshot(path=artifacts / "bookmarklet-add-form.png")
    page.click("input[name=_save]")
    assert "was added successfully" in page.locator(".messagelist").inner_text()
    blogmark = Blogmark.objects.get()
    assert (blogmark.link_url, blogmark.slug) == (f"{article_server}/article.html", "an-article-worth-linking-example")

    blog_this()  # the same page again: already blogged
    warning = page.locator(".already-blogged")
    assert warning.inner_text() == "An article worth linking — Example"
    assert warning.get_attribute("href") == blogmark.get_absolute_url()
    page.screenshot(path=artifacts / "bookmarklet-duplicate.png")
