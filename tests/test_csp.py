"""The Content-Security-Policy holds in a real Chromium: our pages and the admin raise no violation."""

import pytest
from playwright.sync_api import expect
from api_server import fresh_database_url
from production_server import ProductionServer, manage, production_environment, run_python

import conftest

SEED = """
from linkblog import Blogmark, Entry, Quotation, Tag
tag = Tag.objects.create(tag="django", description="The *Django* framework.")
entry = Entry.objects.create(title="An entry", body="First paragraph with `code`.\\n\\n![img](https://example.com/a.png)\\n\\nMore.")
entry.tags.set([tag])
Blogmark.objects.create(link_url="https://example.com/", link_title="A link", commentary="Worth *reading*.").tags.set([tag])
Quotation.objects.create(quotation="Words.", source="Someone", source_url="https://example.com/q").tags.set([tag])
print(entry.get_absolute_url())
"""


@pytest.fixture(scope="module")
def seeded_server():
    # Chromium talks plain HTTP to it, so it would not send Secure cookies back: the admin login
    # needs them off here (the HTTPS rules are tested in test_production.py).
    env = production_environment(fresh_database_url(conftest.POSTGRES), DJANGO_SECURE_COOKIES="0")
    assert manage(env, "migrate", "--noinput").returncode == 0
    permalink = run_python(env, SEED).strip()
    created = manage({**env, "DJANGO_SUPERUSER_PASSWORD": "csp-pass-1"}, "createsuperuser", "--noinput", "--username", "author", "--email", "")
    assert created.returncode == 0, created.stderr
    server = ProductionServer(env, workers=2).start()
    yield server, permalink
    server.stop()


@pytest.fixture
def watched_tab(browser):
    """A tab that records console errors and CSP violation events."""
    context = browser.new_context()
    # The admin's pages link no icon, so Chromium asks for /favicon.ico, which the site lacks (a 404
    # unrelated to the policy): answer it here, so any other failed load still counts.
    context.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    tab = context.new_page()
    problems = []
    tab.on("console", lambda message: message.type == "error" and problems.append(message.text))
    tab.on("pageerror", lambda error: problems.append(str(error)))
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    yield tab, problems
    context.close()


def test_public_pages_raise_no_csp_violation(seeded_server, watched_tab):
    server, permalink = seeded_server
    tab, problems = watched_tab
    for path in ("/", "/tags/", "/tags/django/", permalink):
        response = tab.goto(server.base + path)
        assert response.status == 200, path
        assert "default-src 'self'" in response.headers["content-security-policy"]
        tab.wait_for_load_state("networkidle")
        # The stylesheet (a 'self' resource) really applied.
        assert tab.evaluate("getComputedStyle(document.body).margin") != "8px"
    # The API's interactive docs (Swagger UI from our own static files) run under the same policy.
    tab.goto(server.base + "/api/docs")
    tab.locator(".swagger-ui .opblock").first.wait_for()
    # The example.com image is allowed (https:) but unreachable offline: only CSP matters here.
    assert not [problem for problem in problems if "CSP" in problem or "Content Security Policy" in problem], problems


def test_the_admin_works_under_the_csp(seeded_server, watched_tab):
    server, _ = seeded_server
    tab, problems = watched_tab
    tab.goto(server.base + "/admin/login/")
    tab.fill("#id_username", "author")
    tab.fill("#id_password", "csp-pass-1")
    tab.click("input[type=submit]")
    tab.wait_for_url(server.base + "/admin/")
    tab.goto(server.base + "/admin/linkblog/entry/add/")
    # The admin's own scripts run: the slug is prepopulated from the title as the author types.
    tab.locator("#id_title").press_sequentially("Typed under a strict policy")
    expect(tab.locator("#id_slug")).to_have_value("typed-under-a-strict-policy")
    tab.fill("#id_body", "Body")
    tab.click("input[name=_save]")
    tab.wait_for_url(server.base + "/admin/linkblog/entry/")
    assert "Typed under a strict policy" in tab.content()
    tab.goto(server.base + "/")
    assert "Typed under a strict policy" in tab.content()  # the author's write reached the cached home page
    assert problems == [], problems
