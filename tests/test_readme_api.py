"""README's API examples, pasted as a reader would, against a real server with a blog already in it:
they must work, and change nothing but what they create themselves."""

import re
import subprocess

import conftest
import pytest
from api_server import ROOT, ApiServer


def readme_api_snippet():
    """The shell block of README's "API" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def seeded_server():
    """A blog whose post 1 is a blogmark tagged `web`, as a real blog's first post may well be."""
    server = ApiServer(postgres=conftest.POSTGRES).start()
    make_alice = "from django.contrib.auth.models import User; User.objects.create_superuser('alice', 'alice@example.com', None)"
    server.run("-m", "nanodjango", "manage", "linkblog.py", "shell", "-c", make_alice)
    for number in range(3):
        status, _, _ = server.request("POST", "/api/blogmarks", {"link_url": f"https://example.org/{number}", "link_title": f"Real post {number}", "tags": ["web"]})
        assert status == 201
    status, _, _ = server.request("POST", "/api/entries", {"title": "A real entry", "body": "Mine.", "tags": ["web", "examples"]})
    assert status == 201
    yield server
    server.stop()


def blog_state(server):
    status, items, _ = server.request("GET", "/api/items?limit=200")
    status, tags, _ = server.request("GET", "/api/tags?limit=200")
    posts = sorted((item["type"], item["id"], item["link_url"] if item["type"] == "blogmark" else item["title"], tuple(item["tags"])) for item in items["items"])
    return posts, {tag["tag"]: tag["post_count"] for tag in tags["items"]}


def test_the_readme_api_examples_run_and_touch_only_what_they_create(seeded_server):
    snippet = readme_api_snippet().replace("BLOG=http://127.0.0.1:8000", f"BLOG={seeded_server.base}")
    before_posts, before_tags = blog_state(seeded_server)
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", snippet], cwd=ROOT, env=seeded_server.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert '"link_title":"Example"' in result.stdout.replace(" ", "")  # the PATCH answered with the post
    assert re.search(r'"tag":\s*"api-example-\d+-renamed"', result.stdout)  # the rename worked
    after_posts, after_tags = blog_state(seeded_server)
    assert after_posts == before_posts  # post 1 and the rest untouched, the example's own post deleted
    assert {name: count for name, count in after_tags.items() if name in before_tags} == before_tags
    assert all(name.startswith("api-example-") for name in set(after_tags) - set(before_tags))
