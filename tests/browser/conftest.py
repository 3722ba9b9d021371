"""Browser fixtures: headless Debian Chromium driven by selenium against pytest-django's
live_server (a real HTTP server over the real test database; scripts/browser.sh installs the
browser).

Reuse from any test package:

    pytest_plugins = ["tests.browser.conftest"]   # or put the test under tests/browser/

    def test_page(staff_browser, live_server):
        page = staff_browser()                      # a superuser, logged in
        page.viewport(1440, 900)
        page.open("/admin/campaigns/campaign/")
        page.wait_for_text("#result_list", "Spring sale")
        page.screenshot("campaign-list-1440")       # -> test-artifacts/campaign-list-1440.png

`staff_browser(permissions=["campaigns.view_campaign"])` logs in a staff user with only those
permissions instead. The driver is one Chromium per test session (starting one costs ~1 s);
each test gets it with cookies cleared.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

# A condition that takes a few ms on an idle machine can take seconds on a loaded 2-core one:
# waits are generous bounds on a condition, never a claim about speed.
WAIT_SECONDS = 20.0
ARTIFACTS = Path(
    os.environ.get("WAC_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts"
)


def _executable(name: str, *alternatives: str) -> str:
    for candidate in (name, *alternatives):
        found = shutil.which(candidate)
        if found:
            return found
    raise pytest.UsageError(
        f"{name} not found: the browser tests need Debian's chromium and chromium-driver "
        "(scripts/test installs them through scripts/browser.sh)"
    )


@pytest.fixture(scope="session")
def chromium_driver() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _executable("chromium", "chromium-browser")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1440,900",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    # An explicit driver path: selenium never tries to download one (no internet needed).
    service = Service(executable_path=_executable("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


class BrowserPage:
    """The session's Chromium pointed at the live server, with a few waiting helpers."""

    def __init__(self, driver: Any, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def viewport(self, width: int, height: int = 900) -> None:
        """Exact CSS viewport (window sizes include chrome, and have minimum widths)."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def wait_until(self, condition: Callable[[], Any], message: str = "") -> Any:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        def check(_driver: Any) -> Any:
            try:
                return condition()
            except (NoSuchElementException, StaleElementReferenceException):
                return False

        return WebDriverWait(self.driver, WAIT_SECONDS, poll_frequency=0.1).until(check, message)

    def wait_for_text(self, css: str, text: str) -> None:
        from selenium.common.exceptions import TimeoutException

        try:
            self.wait_until(lambda: text in self.text(css))
        except TimeoutException:
            shown = [element.text for element in self.find_all(css)]
            raise AssertionError(f"{text!r} never appeared in {css}; it shows {shown!r}") from None

    def is_in_viewport(self, element: Any) -> bool:
        """Whether the element's box lies horizontally inside the visible viewport and inside
        every scrolling ancestor's visible area (a table scrolled sideways hides columns)."""
        return bool(
            self.driver.execute_script(
                "const el = arguments[0], r = el.getBoundingClientRect();"
                "if (r.width <= 0 || r.left < 0 || r.right > window.innerWidth) return false;"
                "for (let p = el.parentElement; p; p = p.parentElement) {"
                "  const o = getComputedStyle(p).overflowX;"
                "  if (o === 'visible') continue;"
                "  const b = p.getBoundingClientRect();"
                "  if (r.left < b.left - 1 || r.right > b.left + p.clientWidth + 1) return false;"
                "}"
                "return true;",
                element,
            )
        )

    def screenshot(self, name: str) -> Path:
        """Saves a PNG under test-artifacts/ (gitignored; WAC_TEST_ARTIFACTS overrides)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture
def staff_browser(
    chromium_driver: Any, live_server: Any, transactional_db: None
) -> Iterator[Callable[..., BrowserPage]]:
    """A factory: staff_browser(permissions=None) -> BrowserPage logged in on the live server.
    No permissions given = a superuser; otherwise a staff user with exactly those
    ("app_label.codename")."""
    chromium_driver.delete_all_cookies()
    chromium_driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def login(permissions: list[str] | None = None, username: str = "") -> BrowserPage:
        user_model = get_user_model()
        if permissions is None:
            user = user_model.objects.create_superuser(
                username or "browser-admin", "admin@example.com", "unused-password"
            )
        else:
            user = user_model.objects.create_user(
                username or "browser-staff", "staff@example.com", "unused-password", is_staff=True
            )
            for dotted in permissions:
                app_label, codename = dotted.split(".", 1)
                user.user_permissions.add(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )
        client = Client()
        client.force_login(user)
        page = BrowserPage(chromium_driver, live_server.url)
        # A cookie can only be set for the domain of the current page: open a cheap one first.
        page.open("/static/does-not-exist")
        chromium_driver.delete_all_cookies()
        chromium_driver.add_cookie(
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "path": "/",
            }
        )
        return page

    yield login
    chromium_driver.delete_all_cookies()
