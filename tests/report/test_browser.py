"""The gallery in a real browser: headless Chromium from Debian (`make debian` installs it), driven by selenium."""

from __future__ import annotations

import json
import time

import pytest

from cirsynth.cli import main
from cirsynth.report import Gallery, read_decisions, serve_in_thread
from cirsynth.testing.browser import chromium_paths, headless_chromium
from tests.report.conftest import SCRIPT_CAPTION

pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
pytestmark = pytest.mark.skipif(not all(chromium_paths()), reason="needs Debian's chromium and chromium-driver (make debian)")


def wait_for(fn, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except Exception:  # noqa: BLE001 - the page may still be rendering
            v = None
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the page")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser():
    d = headless_chromium()
    yield d
    d.quit()


@pytest.fixture
def page(gallery_ds, browser):
    server, url = serve_in_thread(Gallery(gallery_ds.root))
    browser.get(url + "/")
    wait_for(lambda: browser.execute_script("return document.body.dataset.loaded"))
    yield gallery_ds, browser
    server.shutdown()
    server.server_close()


def shown_ids(d):
    return [c.get_attribute("data-id") for c in d.find_elements("css selector", "article.card")]


def reload_done(d, before):
    wait_for(lambda: d.execute_script("return document.body.dataset.loaded") != before)


def choose(d, select_id, value):
    from selenium.webdriver.support.ui import Select

    before = d.execute_script("return document.body.dataset.loaded")
    Select(d.find_element("id", select_id)).select_by_value(value)
    reload_done(d, before)


def test_images_render_and_text_stays_text(page):
    ds, d = page
    assert shown_ids(d)[:3] == ["t00", "t01", "t02"]
    imgs = d.find_elements("css selector", "article.card img")
    wait_for(lambda: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in imgs))
    assert all(d.execute_script("return arguments[0].naturalWidth", i) == 24 for i in imgs)
    card2 = d.find_element("css selector", 'article.card[data-id="t02"]')
    assert card2.find_element("css selector", ".ref-caption").text == SCRIPT_CAPTION  # shown as those characters
    assert d.execute_script("return window.__pwned") is None
    assert not card2.find_elements("css selector", ".ref-caption b")
    # the failed row has no target: says so instead of a broken image; scores and failing rules are shown
    card1 = d.find_element("css selector", 'article.card[data-id="t01"]')
    assert "no image in the dataset" in card1.text and "edit: RuntimeError" in card1.text
    assert "clip_dir" in d.find_element("css selector", 'article.card[data-id="t00"] table.scores').text
    assert "no LocalBlend masks" in d.find_element("id", "mask-note").text


def test_filter_and_sort_change_what_is_shown(page):
    _, d = page
    all_ids = shown_ids(d)
    choose(d, "f-status", "rejected")
    assert shown_ids(d) == ["t00", "t03", "t06", "t09"]
    choose(d, "f-status", "")
    choose(d, "f-edit_type", "size")
    assert shown_ids(d) == ["t01", "t03", "t05", "t07", "t09", "t11"]
    choose(d, "f-edit_type", "")
    choose(d, "f-sort", "clip_i2i")
    assert shown_ids(d)[:3] == ["t11", "t10", "t09"] and shown_ids(d) != all_ids
    choose(d, "f-order", "asc")
    assert shown_ids(d)[:2] == ["t00", "t02"]
    choose(d, "f-limit", "10")
    before = d.execute_script("return document.body.dataset.loaded")
    d.find_element("id", "next").click()
    reload_done(d, before)
    assert len(shown_ids(d)) == 2 and "11–12 of 12" in d.find_element("id", "pageinfo").text


def test_key_press_writes_a_decision_that_curate_and_export_then_follow(page, tmp_path):
    from selenium.webdriver.common.keys import Keys  # noqa: F401 - key names for send_keys

    ds, d = page
    body = d.find_element("tag name", "body")
    body.send_keys("a")  # the first card, t00 (rejected by the filter), accepted
    wait_for(lambda: "t00" in read_decisions(ds.root))
    assert read_decisions(ds.root)["t00"]["decision"] == "accept"
    wait_for(lambda: d.find_element("css selector", 'article.card[data-id="t00"]').get_attribute("data-decision") == "accept")
    body.send_keys("j", "j", "r")  # t02 (accepted by the filter) rejected
    wait_for(lambda: read_decisions(ds.root).get("t02", {}).get("decision") == "reject")
    assert main(["export", "--format", "webdataset", str(ds.root), str(tmp_path / "before")]) == 0
    assert main(["curate", str(ds.root)]) == 0
    assert main(["export", "--format", "webdataset", str(ds.root), str(tmp_path / "after")]) == 0

    def ids(dst):
        import tarfile

        out = set()
        for p in dst.glob("*.tar"):
            with tarfile.open(p) as tar:
                out |= {json.load(tar.extractfile(m))["id"] for m in tar.getmembers() if m.name.endswith(".json")}
        return out

    assert ids(tmp_path / "after") == (ids(tmp_path / "before") | {"t00"}) - {"t02"}


def test_plots_tab_shows_the_run_plots(page):
    ds, d = page
    from cirsynth.report import ManifestView, make_plots

    make_plots(ManifestView(ds.root))
    server, url = serve_in_thread(Gallery(ds.root, plots=make_plots(ManifestView(ds.root))))
    try:
        d.get(url + "/")
        wait_for(lambda: d.execute_script("return document.body.dataset.loaded"))
        d.find_element("id", "tab-plots").click()
        imgs = d.find_elements("css selector", "#plots img")
        assert len(imgs) == 5
        wait_for(lambda: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 100", i) for i in imgs))
        assert "precision" in d.find_element("id", "plot-notes").text
    finally:
        server.shutdown()
        server.server_close()
