"""The hosted connect page in a real headless Chromium: what a person does with a connect_url.

Each test saves a screenshot of every page it reaches under ``build/test-output/browser/``. The page itself runs
no script; ``execute_script`` below is the test measuring the layout, which a page's CSP does not govern.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from connvault.api.pages import STYLE_HASH
from tests.browser.conftest import Browser, Site

# Chromium is the heaviest thing the suite runs: never beside the timed soak (same xdist group, one worker).
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("cpu_heavy")]

REFUSED_KEY = "dk_not_a_key_it_issued_0000"


def wait_for_title(browser: Browser, title: str) -> None:
    WebDriverWait(browser.driver, 20).until(expected_conditions.title_is(title))


def heading(browser: Browser) -> str:
    return browser.driver.find_element(By.TAG_NAME, "h1").text


def assert_stayed_home(browser: Browser, site: Site) -> None:
    """No request for any host but 127.0.0.1, and no CSP complaint in the console."""
    assert browser.requested_hosts() == {"127.0.0.1"}, browser.requested_hosts()
    problems = browser.console_problems()
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems


def test_a_person_connects_the_demo_oauth_provider_from_the_link(browser: Browser, site: Site) -> None:
    browser.driver.get(site.connect_url())
    wait_for_title(browser, "Connect an account")
    assert "Acme Demo" in browser.driver.page_source
    browser.screenshot("01-choose-an-integration")

    browser.driver.find_element(By.CSS_SELECTOR, 'button[value="demo"]').click()
    wait_for_title(browser, "Connected")
    browser.screenshot("02-oauth-connected")
    back = browser.driver.find_element(By.LINK_TEXT, "Return to Acme Demo")
    connection_id = parse_qs(urlsplit(back.get_attribute("href")).query)["connection_id"][0]
    back.click()
    wait_for_title(browser, "Connected")  # the devserver's /demo/done page

    assert connection_id in browser.driver.page_source
    assert site.provider.stats().token_calls == {"authorization_code": 1}
    (document,) = browser.response_headers("/connect")
    policy = document["content-security-policy"]
    assert policy.startswith("default-src 'none'; ")
    assert f"style-src '{STYLE_HASH}'" in policy
    assert "script-src" not in policy, "default-src 'none' already refuses every script"
    assert "frame-ancestors 'none'" in policy
    assert document["x-frame-options"] == "DENY"
    assert document["cache-control"] == "no-store"
    assert_stayed_home(browser, site)


def test_a_person_enters_a_refused_key_then_a_good_one_with_the_keyboard_only(browser: Browser, site: Site) -> None:
    good_key = site.provider.settings.api_keys[0]
    browser.driver.get(site.connect_url())
    wait_for_title(browser, "Connect an account")
    body = browser.driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB, Keys.TAB)  # the first integration, then the second: Demo API
    assert browser.driver.switch_to.active_element.get_attribute("value") == "demo-apikey"
    browser.driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for_title(browser, "Connect Demo API")

    field = browser.driver.find_element(By.ID, "field-api_key")
    label = browser.driver.find_element(By.CSS_SELECTOR, 'label[for="field-api_key"]')
    assert label.text == "Demo API key"
    assert field.get_attribute("type") == "password"
    assert field.get_attribute("aria-describedby") == "hint-api_key"
    browser.screenshot("03-api-key-form")

    field.click()
    field.send_keys(REFUSED_KEY, Keys.ENTER)
    wait_for_title(browser, "Connect Demo API")
    problem = browser.driver.find_element(By.ID, "problem")
    assert "refused these credentials" in problem.text
    retyped = browser.driver.find_element(By.ID, "field-api_key")
    assert retyped.get_attribute("value") == "", "the refused key is not written back into the page"
    assert REFUSED_KEY not in browser.driver.page_source
    browser.screenshot("04-api-key-refused")

    retyped.send_keys(good_key, Keys.ENTER)
    wait_for_title(browser, "Connected")
    assert "Your Demo API account is now connected to Acme Demo." in browser.driver.page_source
    assert good_key not in browser.driver.page_source
    browser.screenshot("05-api-key-connected")
    assert site.provider.stats().token_calls["api_key_check"] == 1
    assert_stayed_home(browser, site)


def test_a_person_opening_an_expired_link_is_told_so(browser: Browser, site: Site, monkeypatch) -> None:
    from connvault import wiring

    monkeypatch.setenv("CONNVAULT_CONNECT_LINK_TTL_SECONDS", "0")
    wiring.reset()
    url = site.connect_url()

    browser.driver.get(url)

    wait_for_title(browser, "This link has expired")
    assert "Ask for a new one" in browser.driver.page_source
    back = browser.driver.find_element(By.LINK_TEXT, "Return to Acme Demo").get_attribute("href")
    assert parse_qs(urlsplit(back).query) == {"error": ["expired_link"]}
    browser.screenshot("06-expired-link")
    assert_stayed_home(browser, site)


def test_a_used_link_opens_again_only_for_the_browser_that_opened_it(browser: Browser, site: Site) -> None:
    url = site.connect_url()
    browser.driver.get(url)
    wait_for_title(browser, "Connect an account")

    browser.driver.refresh()
    wait_for_title(browser, "Connect an account")
    browser.driver.delete_all_cookies()  # now it is any other browser
    browser.driver.get(url)

    wait_for_title(browser, "This link was already used")
    browser.screenshot("07-used-link")


def test_the_page_fits_a_phone(browser: Browser, site: Site) -> None:
    browser.driver.set_window_size(390, 844)
    browser.driver.get(site.connect_url())
    wait_for_title(browser, "Connect an account")

    overflow = browser.driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    buttons = browser.driver.find_elements(By.CSS_SELECTOR, "button.choice")
    browser.screenshot("08-phone")

    assert overflow <= 0
    assert all(button.size["height"] >= 44 for button in buttons), "touch targets of at least 44 px"
    assert_stayed_home(browser, site)
