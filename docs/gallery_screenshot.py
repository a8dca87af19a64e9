"""Take docs/gallery.png: the gallery over a dataset, in headless Chromium.

    PYTHONPATH=src python docs/gallery_screenshot.py demo_out/dataset docs/gallery.png
"""

from __future__ import annotations

import sys
import time

from cirsynth.report import Gallery, ManifestView, make_plots, serve_in_thread
from cirsynth.testing.browser import headless_chromium


def main(root: str, out: str) -> None:
    server, url = serve_in_thread(Gallery(root, plots=make_plots(ManifestView(root))))
    d = headless_chromium(1400, 1100)
    try:
        d.get(url + "/")
        end = time.monotonic() + 20
        while not d.execute_script("return document.body.dataset.loaded") and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(0.5)  # images decode
        d.save_screenshot(out)
    finally:
        d.quit()
        server.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
