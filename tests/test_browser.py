"""The search page in a real headless Chromium (Debian's), driven by Playwright, keyboard only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from semsearch.index.storage.lexical import ANALYZER

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run `apt-get install chromium` (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    yield opened
    context.close()


def test_typing_a_question_shows_china_kazakhstan_first(page: Page, live_server: str) -> None:
    page.goto(live_server + "/")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type("energy cooperation in Central Asia")
    page.keyboard.press("Enter")
    first = page.locator("#results li").first
    expect(first.locator(".title")).to_have_text("China and Kazakhstan strengthen cooperation for mutual growth")
    expect(first.locator(".meta")).to_contain_text("score")
    expect(first.locator(".passage")).not_to_be_empty()
    expect(page.locator("#results li")).to_have_count(10)
    # The title links to the whole article; follow it with the keyboard.
    first.locator(".title").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#article h2")).to_have_text("China and Kazakhstan strengthen cooperation for mutual growth")
    expect(page.locator("#article p").first).to_contain_text("pragmatic cooperation")


def test_empty_query_shows_a_message(page: Page, live_server: str) -> None:
    page.goto(live_server + "/")
    page.keyboard.type("   ")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text("Type a question to search.")
    expect(page.locator("#results li")).to_have_count(0)


def test_markup_in_results_is_shown_as_text(page: Page, live_server: str) -> None:
    page.goto(live_server + "/?q=" + "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%20Kenya%20interns")
    expect(page.locator("#results li").first).to_be_visible()
    assert page.locator("#results img").count() == 0


def test_query_words_are_marked_and_filters_apply(page: Page, live_server: str) -> None:
    page.goto(live_server + "/")
    page.locator("#date_from").fill("2004-10-01")
    page.locator("#date_to").fill("2004-12-31")
    page.locator("#mode").select_option("lexical")
    page.locator("#q").fill("mobile phones")
    page.locator("#q").press("Enter")
    expect(page.locator("#results li").first).to_be_visible()
    metas = page.locator("#results .meta").all_inner_texts()
    assert metas and all(m.startswith("2004-1") for m in metas), metas
    marks = page.locator("#results mark").all_inner_texts()
    assert marks and {ANALYZER.terms(m)[0] for m in marks} <= set(ANALYZER.terms("mobile phones")), marks
    assert "date_from=2004-10-01" in page.url and "mode=lexical" in page.url
    page.reload()  # the filters come back from the address
    expect(page.locator("#date_from")).to_have_value("2004-10-01")
    expect(page.locator("#results li").first).to_be_visible()


def replace_url(url: str) -> Callable[[Route], None]:
    """A route handler passing the real server's answer on with its `url` replaced."""

    def handle(route: Route) -> None:
        answer = route.fetch()
        route.fulfill(response=answer, json={**answer.json(), "url": url})

    return handle


def test_only_http_links_are_set_on_the_page(page: Page, live_server: str) -> None:
    """Ingest keeps only http(s) links, but an index written before that rule may hold any: the page checks
    again. The real server's answer is kept, with its `url` replaced."""
    hostile = ["javascript:alert(document.domain)", " JAVASCRIPT:alert(1)", "data:text/html,<script>alert(1)</script>",
               "vbscript:msgbox(1)", "/relative", "https:"]  # fmt: skip
    for url in [*hostile, "https://example.org/a?b=1"]:
        page.route("**/articles/*.txt", replace_url(url))  # the article, not its related stories
        page.goto(f"{live_server}/?article=china-kazakhstan-cooperation.txt")
        expect(page.locator("#article h2")).to_be_visible()
        links = page.locator("#article > a")  # the article's own link, not those to related stories
        if url in hostile:
            expect(links).to_have_count(0)
        else:
            expect(links).to_have_attribute("href", url)
        page.unroute("**/articles/*.txt")


# ReDoc's bundle shows its maker's logo from their site; without it the page is whole.
@pytest.mark.parametrize(("path", "outside"), [("/docs", []), ("/redoc", ["https://cdn.redoc.ly/redoc/logo-mini.svg"])])
def test_the_api_docs_render_without_the_network(page: Page, live_server: str, path: str, outside: list[str]) -> None:
    """/docs and /redoc load their scripts from this server: with every other host cut off, they still render."""
    elsewhere: list[str] = []

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(live_server + path)
    expect(page.get_by_text("Search with query parameters").first).to_be_visible()
    for _ in range(50):  # ReDoc asks for its logo once the page is drawn, which may come after the text
        if len(elsewhere) >= len(outside):
            break
        page.wait_for_timeout(100)
    assert elsewhere == outside


def test_sort_by_date_and_more_results_with_the_keyboard(page: Page, live_server: str) -> None:
    question = "energy cooperation in Central Asia"
    page.goto(live_server + "/")
    expect(page.locator("#q")).to_be_focused()  # keys typed before the page focuses the box are lost
    page.keyboard.type(question)
    expect(page.locator("#q")).to_have_value(question)
    page.keyboard.press("Tab")  # the Search button
    page.keyboard.press("Tab")  # mode
    page.keyboard.press("Tab")  # sort
    expect(page.locator("#sort")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#sort")).to_have_value("date")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.press("Enter")
    items = page.locator("#results li")
    expect(items).to_have_count(10)
    more = page.locator("#more")
    expect(more).to_be_visible()
    more.focus()
    page.keyboard.press("Enter")
    expect(items).to_have_count(20)
    expect(items.nth(10).locator(".title")).to_be_focused()  # the reader continues at the first new hit
    expected = page.request.get(live_server + "/search", params={"q": question, "k": 20, "sort": "date"}).json()
    # Passages of one article share its date and may swap places between two encodings of the question.
    texts = [item.locator(".passage").inner_text() for item in items.all()]
    assert len(set(texts)) == 20
    dates = [item.locator(".meta").inner_text().split(" · ")[0] for item in items.all()]
    assert dates == [h["date"] for h in expected["hits"]] == sorted(dates, reverse=True)
    assert "sort=date" in page.url


def test_related_stories_are_reached_and_followed_with_the_keyboard(page: Page, live_server: str) -> None:
    article = "china-kazakhstan-cooperation.txt"
    expected = page.request.get(f"{live_server}/articles/{article}/related", params={"k": 5}).json()["related"]
    page.goto(live_server + "/?article=" + article)
    expect(page.locator("#article h2")).to_have_text("China and Kazakhstan strengthen cooperation for mutual growth")
    expect(page.locator("#related-heading")).to_have_text("Related stories")
    links = page.locator("#related li a")
    expect(links).to_have_count(5)
    assert [link.inner_text() for link in links.all()] == [r["title"] for r in expected]
    expect(page.locator("#q")).to_be_focused()
    # Tab from the search box through the form (a date input takes a stop per field) to the first related story.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#related') !== null"):
            break
    expect(links.first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#article h2")).to_have_text(expected[0]["title"])
    assert "article=" + expected[0]["article_id"] in page.url
    expect(page.locator("#related li a")).to_have_count(5)
    assert article not in [link.get_attribute("href") for link in page.locator("#related li a").all()]


def test_a_facet_click_narrows_to_its_month_and_recency_is_kept_across_pages(page: Page, live_server: str) -> None:
    question = "energy cooperation in Central Asia"
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/search?" in r.url and "k=10" in r.url else None)
    page.goto(live_server + "/")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type(question)
    page.locator("#recency_half_life").focus()
    page.keyboard.press("ArrowDown")  # this week
    expect(page.locator("#recency_half_life")).to_have_value("7")
    page.locator("#q").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#results li")).to_have_count(10)
    expected = page.request.get(
        live_server + "/search", params={"q": question, "facets": "source,month", "recency_half_life": 7}
    ).json()["facets"]
    months = page.locator("#facets button", has_text="2012-05 (")
    expect(months).to_have_text(f"2012-05 ({next(v['count'] for v in expected['month'] if v['value'] == '2012-05')})")
    page.locator("#more").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#results li")).to_have_count(20)
    first, second = (parse_qs(urlsplit(url).query) for url in requests[:2])
    assert first["now"] == second["now"] and first["recency_half_life"] == ["7"]  # one moment for every page
    assert "facets" in first and "facets" not in second
    months.focus()
    with page.expect_response(lambda r: "date_from=2012-05-01" in r.url and "date_to=2012-05-31" in r.url):
        page.keyboard.press("Enter")
    expect(page.locator("#date_from")).to_have_value("2012-05-01")
    expect(page.locator("#date_to")).to_have_value("2012-05-31")
    expect(page.locator("#results li .meta").first).to_contain_text("2012-05")
    for meta in page.locator("#results li .meta").all():
        assert meta.inner_text().startswith("2012-05")
    assert "date_from=2012-05-01" in page.url
