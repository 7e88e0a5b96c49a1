"""The dashboard's small things, in a real browser (issue 13, point 8): the new-run form on a phone,
fields with a problem marked red with their message beside them, sample backgrounds without a
model, the chart's legend and round box, and an event feed of sentences that shows each event once.
Each test leaves a screenshot in test-artifacts/screenshots/ to look at."""

from playwright.sync_api import expect

from tests.conftest import SCREENSHOTS
from tests.conftest import sign_in_page as sign_in

RED = "rgb(179, 38, 30)"  # #b3261e, the dashboard's colour for errors


def test_the_new_run_form_fits_a_phone(page, site, shoot):
    page.set_viewport_size({"width": 390, "height": 844})  # an iPhone's
    sign_in(page, site)
    page.goto(f"{site}/runs/new")
    expect(page.locator("#preview ol.profiles li")).to_have_count(5)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"
    shoot("new-run-phone")


def test_a_field_with_a_problem_is_red_and_its_message_is_beside_it(page, site, shoot):
    sign_in(page, site)
    page.goto(f"{site}/runs/new?preset=paper-1k")
    ratio, template = page.get_by_label("Ratio"), page.get_by_label("Background template")
    ratio.fill("3/2")
    template.fill("{name} is a {gendr}.")
    for field, message in [(ratio, "ratio must lie strictly between 0 and 1"), (template, "unknown fields")]:
        expect(field).to_have_attribute("aria-invalid", "true")
        assert field.evaluate("f => getComputedStyle(f).borderTopColor") == RED
        # The message is in the field's own label, just below it, and says what is wrong.
        beside = page.locator("label", has=field).locator(".field-error")
        expect(beside).to_contain_text(message)
        expect(beside).to_have_css("color", RED)
    expect(page.locator("#err-spec")).to_be_empty()  # nothing at the top of the form
    expect(page.locator("#preview")).to_contain_text("see the fields marked in red")
    page.locator("body").click(position={"x": 5, "y": 5})  # no focus ring over the red border
    shoot("new-run-errors")
    ratio.fill("1/2")
    template.fill("{name} is a {gender}.")
    expect(page.locator("#preview ol.profiles li")).to_have_count(5)
    expect(ratio).not_to_have_attribute("aria-invalid", "true")
    expect(template).not_to_have_attribute("aria-invalid", "true")
    assert ratio.evaluate("f => getComputedStyle(f).borderTopColor") != RED


def test_sample_backgrounds_without_a_model_say_why(page, site, shoot):
    sign_in(page, site)
    page.goto(f"{site}/runs/new?preset=paper-1k")
    button = page.get_by_role("button", name="Write sample backgrounds")
    button.click()
    why = page.locator(".personas-button .field-error")  # beside the button
    expect(why).to_contain_text("choose a model first")
    expect(page.get_by_label("Backgrounds written by")).to_have_attribute("aria-invalid", "true")
    page.locator("fieldset", has_text="Language models").screenshot(
        path=SCREENSHOTS / "personas-no-model.png"
    )
    page.get_by_label("Rounds", exact=True).fill("4")  # any change takes the message away
    expect(why).to_be_empty()


def test_the_run_page_legend_round_box_and_a_feed_of_sentences_shown_once(page, site, slow_run, shoot):
    sign_in(page, site)
    page.goto(f"{site}/runs/{slow_run['id']}")
    expect(page.locator("#run-live .status")).to_have_text("running", timeout=60_000)
    # Three rounds at least (the feed may take two at once: a count of exactly 3 may never be seen).
    expect(page.locator("#feed li.round").nth(2)).to_be_attached(timeout=60_000)
    # Away and back: htmx restores the page from its history, whose stream sends again the events
    # that came since it was served (each once in the feed all the same), then the run is stopped.
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    page.go_back()
    expect(page.locator("#run-live .status")).to_have_text("running")
    page.wait_for_timeout(2_000)  # the stream of the restored page catches up
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#run-live .status")).to_have_text("stopped", timeout=30_000)
    feed = page.locator("#feed li")
    expect(feed.first).to_contain_text("stopped for good: a stopped run cannot be resumed")
    page.wait_for_timeout(1_000)
    ids = feed.evaluate_all("items => items.map(item => item.dataset.event)")
    assert len(ids) == len(set(ids)), f"events shown twice: {sorted(ids)}"
    texts = feed.all_inner_texts()
    assert sum("stopped" in t for t in texts) == 1
    assert [t for t in texts if "started" in t] == [t for t in texts if "on 2 hosts, driven by worker" in t]
    assert not [t for t in texts if "{" in t or '":' in t], texts  # sentences, not JSON

    chart = page.locator("#run-chart")
    page.wait_for_function("() => Chart.getChart(document.querySelector('canvas[data-chart=series]'))")
    # Each line's legend swatch is a stretch of line, not a box outlined by a dashed border.
    styles = page.evaluate(
        "() => Chart.getChart(document.querySelector('canvas[data-chart=series]'))"
        ".legend.legendItems.map(item => item.pointStyle)"
    )
    assert styles == ["line", "line"]
    # The round box shows its whole placeholder beside the number's arrows.
    room = chart.get_by_label("round", exact=True).evaluate(
        """input => {
          const style = getComputedStyle(input);
          const context = document.createElement("canvas").getContext("2d");
          context.font = `${style.fontSize} ${style.fontFamily}`;
          const text = context.measureText(input.placeholder).width;
          const inside = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
          return inside - text;
        }"""
    )
    assert room >= 16, f"“newest” needs {-room + 16:.0f} px more (16 px: the arrows)"
    chart.screenshot(path=SCREENSHOTS / "run-chart-legend.png")
    page.locator("#feed").screenshot(path=SCREENSHOTS / "run-feed.png")
    shoot("run-stopped")
