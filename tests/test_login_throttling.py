"""Login throttling: repeated wrong passwords lock a username out from that address (django-axes)."""

import pytest
from django.core.management import call_command
from django.test import Client

from blogworks.throttling import client_ip_address
from linkblog import ApiToken

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password"


@pytest.fixture
def author(django_user_model):
    return django_user_model.objects.create_superuser("author", "author@example.com", PASSWORD)


def log_in(username, password, address="192.0.2.10", **headers):
    """A fresh browser at `address` posting the admin's login form: its response."""
    browser = Client(REMOTE_ADDR=address)
    return browser.post("/admin/login/?next=/admin/", {"username": username, "password": password, "next": "/admin/"},
                        **headers)


def fail_five_times(username="author", address="192.0.2.10"):
    for _ in range(5):
        response = log_in(username, "wrong", address)
    return response


def test_five_wrong_passwords_lock_the_user_out_from_that_address(author):
    assert log_in("author", "wrong").status_code == 200  # the form again, with Django's own message
    fail_five_times()
    response = log_in("author", PASSWORD)
    assert response.status_code == 429
    html = response.content.decode()
    assert "Too many failed logins" in html and "After 5 wrong passwords for “author”" in html
    assert "locked for 1\xa0hour" in html and "python linkblog.py manage axes_reset_username author" in html
    assert "style=" not in html and "<script>" not in html  # strict CSP: no inline styles or scripts


def test_the_lockout_holds_only_that_user_at_that_address(author, django_user_model):
    django_user_model.objects.create_superuser("editor", "editor@example.com", PASSWORD)
    fail_five_times()
    assert log_in("author", PASSWORD, address="198.51.100.7").status_code == 302
    assert log_in("editor", PASSWORD).status_code == 302


def test_resetting_the_username_unlocks_it(author):
    fail_five_times()
    assert log_in("author", PASSWORD).status_code == 429
    call_command("axes_reset_username", "author")
    assert log_in("author", PASSWORD).status_code == 302


def test_api_tokens_still_work_for_a_locked_out_user(author, client):
    fail_five_times()
    token = ApiToken.issue(author)
    response = client.get("/api/items", {"is_draft": "true"}, HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR="192.0.2.10")
    assert response.status_code == 200


def test_behind_a_proxy_the_address_comes_from_x_forwarded_for_only_when_configured(author, settings, rf):
    request = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9, 192.0.2.99")
    assert client_ip_address(request) == "127.0.0.1"  # by default the header is the client's to forge
    settings.LINKBLOG_PROXY_COUNT = 1
    assert client_ip_address(request) == "192.0.2.99"  # the address our one proxy saw
    settings.LINKBLOG_PROXY_COUNT = 2
    assert client_ip_address(request) == "203.0.113.9"
    # With one proxy, failures from one client do not lock out another behind the same proxy.
    settings.LINKBLOG_PROXY_COUNT = 1
    for _ in range(5):
        log_in("author", "wrong", address="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.50")
    assert log_in("author", PASSWORD, address="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.50").status_code == 429
    assert log_in("author", PASSWORD, address="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.51").status_code == 302
