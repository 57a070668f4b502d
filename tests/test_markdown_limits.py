"""Markdown renders in bounded time for any body the rules accept (200,000 characters).

Python-Markdown is quadratic (or worse) on some shapes of text: thousands of unmatched `[`, of quotes
or emphasis markers in one paragraph, of one-line headings or rules in a row, a table with 50,000
columns; some overflow the stack. An exploratory QA pass measured seconds to hours for a save, an
import line or a live preview. Each shape is rendered here at the rules' full length in a subprocess
(whose main thread has the time limit, as a gunicorn worker's has) given 30 seconds, which the code
before the limit exceeded on each (a minute to hours; the stack overflows were 500s). No assertion is
about time: a shape that hangs again fails by the subprocess's timeout.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from blogworks import text
from blogworks.rules import MAX_TEXT_LENGTH

ROOT = Path(__file__).resolve().parent.parent

# name: (Python expression for a body of at most n characters, text the page must show either way)
PATHOLOGICAL = {
    "open brackets": ('"[" * n', "[[[[[[[["),
    "nested brackets": ('"[" * (n // 2) + "]" * (n // 2)', "[[[["),
    "reference links": ('"[a][" * (n // 4)', "[a]["),
    "inline links": ('"[a](" * (n // 4)', "[a]("),
    "emphasis": ('"*a" * (n // 2)', "a"),
    "quotes": ("\"'\" * n", "'"),
    "one-line headings": ('"# a\\n" * (n // 4)', "a"),
    "setext headings": ('"a\\n=\\n" * (n // 4)', "a"),
    "rules": ('"---\\n" * (n // 4)', "---"),
    "unclosed tags": ('"<a" * (n // 2)', "&lt;a"),
    "numbered items": ('"1. " * (n // 3)', "1."),
    "definition lists": ('"a\\n: b\\n" * (n // 6)', "b"),
    "a table with 50,000 columns": ('"|a" * (n // 4 - 1) + "\\n" + "|-" * (n // 4 - 1)', "a"),
}

RENDER = """
import sys
from blogworks.text import render_markdown
text = eval(sys.argv[1], {"n": int(sys.argv[2])})
assert len(text) <= int(sys.argv[2]), len(text)
sys.stdout.write(render_markdown(text))
"""


@pytest.mark.parametrize("expression, shown", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_markdown_renders_at_full_length(expression, shown):
    result = subprocess.run([sys.executable, "-c", RENDER, expression, str(MAX_TEXT_LENGTH)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shown in result.stdout
    assert "<script" not in result.stdout and "<a " not in result.stdout


def test_a_text_past_the_limit_is_shown_as_its_plain_paragraphs_and_the_next_renders_as_usual(monkeypatch):
    monkeypatch.setattr(text, "RENDER_SECONDS", 1e-6)  # every render runs past it
    assert text.render_markdown("Hello *world* & <b>you</b>\n\nSecond\nline") == (
        "<p>Hello *world* &amp; &lt;b&gt;you&lt;/b&gt;</p><p>Second\nline</p>")
    monkeypatch.undo()
    assert text.render_markdown("Hello *world*") == "<p>Hello <em>world</em></p>"


def test_a_text_that_overflows_the_stack_is_shown_as_plain_text(monkeypatch):
    class Deep:
        def convert(self, source):
            raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(text, "markdown_converter", Deep)
    assert text.render_markdown("1. 1. 1.") == "<p>1. 1. 1.</p>"
