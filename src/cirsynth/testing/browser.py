"""Headless Chromium for the gallery's browser tests and screenshots (Debian's chromium + chromium-driver, selenium)."""

from __future__ import annotations

import shutil


def chromium_paths() -> tuple[str | None, str | None]:
    """The system ``chromium`` and ``chromedriver`` binaries (None where missing; `make debian` installs both)."""
    return shutil.which("chromium"), shutil.which("chromedriver")


def headless_chromium(width: int = 1400, height: int = 1000):
    """A selenium ``webdriver.Chrome`` on the system Chromium, headless. Quit it when done."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_paths()
    if not (browser and driver):
        raise RuntimeError("needs Debian's chromium and chromium-driver (make debian)")
    opts = Options()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)
