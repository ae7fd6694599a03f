"""End to end in a real headless browser (Debian's chromium + chromedriver, driven by Selenium).

Open the studio, upload a small CSV, see the detected columns and preview, train a
tiny model for a few steps, watch the chart fill, try the new prompt beside a hard
prompt, inspect it, download it, see the same name refused, delete the job, the
upload and the prompt. Every change goes through the studio's token check. Screenshots of each page go to /tmp/studio-shots/.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest

from .conftest import reviews_csv, studio, wait_until

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path("/tmp/studio-shots")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
    pytest.skip(f"needs {CHROMIUM} and {DRIVER} (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    profile, downloads = tempfile.mkdtemp(prefix="studio-chrome-"), tempfile.mkdtemp(prefix="studio-dl-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1366,900",
    ):  # fmt: skip
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": downloads, "download.prompt_for_download": False}
    )
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.downloads = Path(downloads)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)


def shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1366, max(800, min(height + 20, 2400)))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def text(driver, css: str) -> str:
    # One step in the page: the studio re-renders its tables and messages while it polls, so an element found
    # first and read after can be gone (StaleElementReferenceException).
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css)


def click(driver, css: str) -> bool:
    """Click the element `css` names as it is now, if there is one (one step in the page, as `text`).

    The click runs just after the script returns: a click that opens a confirm() dialog would block it.
    """
    script = "const e = document.querySelector(arguments[0]); if (e) setTimeout(() => e.click(), 0); return !!e;"
    return driver.execute_script(script, css)


def test_upload_train_try_inspect_download_in_a_browser(browser, base, tmp_path):
    data = reviews_csv(tmp_path / "movie reviews.csv", rows=24)
    with studio(base, tmp_path / "data") as server:
        b = browser
        b.get(server.url + "/studio/")
        wait_until(lambda: b.execute_script("return document.body.dataset.ready") == "1", 30)
        assert "tiny-llama" in text(b, "#model")
        assert b.find_element(By.ID, "no-prompts").is_displayed()
        shot(b, "1-prompts-empty")

        # Train tab: a bad file first (the message shows on the page), then the real one.
        b.find_element(By.ID, "tab-train").click()
        bad = tmp_path / "bad.csv"
        bad.write_bytes(b"text,label\nfine,a\n\xff\xfe,b\n")
        b.find_element(By.ID, "upload-file").send_keys(str(bad))
        wait_until(lambda: "not valid UTF-8" in text(b, "#upload-error"), 20)
        assert "bad.csv:3" in text(b, "#upload-error")
        shot(b, "2a-train-upload-error")
        b.find_element(By.ID, "upload-file").send_keys(str(data))
        wait_until(lambda: "24 rows" in text(b, "#upload-status"), 20)
        assert Select(b.find_element(By.ID, "text-column")).first_selected_option.text == "text"
        assert Select(b.find_element(By.ID, "label-column")).first_selected_option.text == "label"
        assert "pos (12)" in text(b, "#label-summary")
        preview = b.find_elements(By.CSS_SELECTOR, "#preview tbody tr")
        assert len(preview) == 5 and "a good film, number 0" in preview[0].text
        assert b.find_element(By.ID, "job-name").get_attribute("value") == "movie-reviews"

        # Settings for a tiny, fast run; labels answer with one byte-level token each.
        settings = {
            "job-name": "movies", "template": "Review: {text}\nSentiment: ", "labels": "pos=p,neg=n",
            "num_virtual_tokens": "4", "steps": "8", "batch_size": "4", "eval_every": "4", "lr": "0.3",
        }  # fmt: skip
        for element_id, value in settings.items():
            field = b.find_element(By.ID, element_id)
            field.clear()
            field.send_keys(value)
        # A plain prompt (the default method is a deep one): the inspect tab shows its nearest tokens. The form's
        # settings are drawn from the server's schema; a blank one shows its default, the method's recipe.
        assert b.find_element(By.ID, "seed").get_attribute("placeholder") == "0"
        Select(b.find_element(By.ID, "method")).select_by_value("prompt")
        assert b.find_element(By.ID, "balance").get_attribute("value") == "auto"
        shot(b, "2b-train-upload-preview")
        b.find_element(By.ID, "start-button").click()
        wait_until(lambda: b.find_elements(By.CSS_SELECTOR, "#chart polyline.loss"), 60)
        # The chart grows as steps arrive, then the job finishes with dev points drawn.
        wait_until(lambda: text(b, "#stat-state") == "finished", 120, 0.2)
        points = b.find_element(By.CSS_SELECTOR, "#chart polyline.loss").get_attribute("points").split()
        assert len(points) == 8
        assert len(b.find_elements(By.CSS_SELECTOR, "#chart circle.dev")) == 2
        assert text(b, "#stat-step") == "8 / 8" and text(b, "#stat-speed") != "\u2014"
        assert "finished" in text(b, "#job-table tbody")
        shot(b, "3-train-finished-chart")

        # Prompts tab: the new prompt is listed; try it beside a hard prompt.
        b.find_element(By.ID, "tab-prompts").click()
        wait_until(lambda: b.find_elements(By.CSS_SELECTOR, '#prompt-table tr[data-name="movies"]'), 20)
        row = b.find_element(By.CSS_SELECTOR, '#prompt-table tr[data-name="movies"]')
        assert "classify" in row.text and "pos, neg" in row.text
        row.click()
        b.find_element(By.ID, "try-text").send_keys("a good film, truly")
        b.find_element(By.ID, "hard-text").send_keys("Is this review positive?")
        b.find_element(By.ID, "try-button").click()
        wait_until(lambda: len(b.find_elements(By.CSS_SELECTOR, ".result .prob")) == 4, 30)
        assert "Soft prompt: movies (T=4)" in text(b, "#soft-result h3")
        assert "%" in text(b, "#soft-result .value") and "Is this review positive?" in text(b, "#hard-result")
        shot(b, "4-prompts-try-side-by-side")

        # Inspect tab: the table and the plot.
        b.find_element(By.ID, "tab-inspect").click()
        b.find_element(By.ID, "inspect-button").click()
        wait_until(lambda: len(b.find_elements(By.CSS_SELECTOR, "#inspect-table tbody tr")) == 4, 30)
        wait_until(
            lambda: b.execute_script(
                "const i = document.getElementById('inspect-plot'); return i.complete && i.naturalWidth > 0"
            ),
            60,
        )
        shot(b, "5-inspect")

        # Download from the list.
        b.find_element(By.ID, "tab-prompts").click()
        b.find_element(By.CSS_SELECTOR, '#prompt-table tr[data-name="movies"] a.download').click()
        archive = b.downloads / "movies.zip"
        wait_until(lambda: archive.is_file() and zipfile.is_zipfile(archive), 30)
        with zipfile.ZipFile(archive) as z:
            assert "movies/adapter_model.safetensors" in z.namelist()

        # The same name again is refused on the page, unless "replace" is ticked.
        b.find_element(By.ID, "tab-train").click()
        b.find_element(By.ID, "start-button").click()
        wait_until(lambda: "a prompt named 'movies' already exists" in text(b, "#start-error"), 20)
        shot(b, "6-name-taken")

        # Delete buttons: the finished job, the uploaded file, then the prompt (each asks to confirm).
        def confirm_delete(css: str) -> None:
            wait_until(lambda: click(b, css), 20)
            wait_until(lambda: _alert(b), 10).accept()

        wait_until(lambda: b.find_elements(By.CSS_SELECTOR, "#upload-table tbody tr"), 20)
        confirm_delete("#job-table tbody tr button.delete")
        wait_until(lambda: not b.find_elements(By.CSS_SELECTOR, "#job-table tbody tr"), 20)
        confirm_delete("#upload-table tbody tr button.delete")
        wait_until(lambda: not b.find_elements(By.CSS_SELECTOR, "#upload-table tbody tr"), 20)
        assert "uploads 0 B" in text(b, "#storage-summary")
        b.find_element(By.ID, "tab-prompts").click()
        confirm_delete('#prompt-table tr[data-name="movies"] button.delete')
        wait_until(lambda: not b.find_elements(By.CSS_SELECTOR, '#prompt-table tr[data-name="movies"]'), 20)
        assert not (tmp_path / "data" / "prompts" / "movies").exists()


def _alert(driver):
    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None


def test_a_chat_upload_trains_a_chat_prompt_tried_in_a_chat_box(browser, tmp_path):
    import json

    from softprompt.testing import tiny_chat_base

    chat_base = tiny_chat_base("llama", "qwen2")
    data = tmp_path / "chats.jsonl"
    turns = lambda i: [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "yes" if i % 2 else "no"}]  # noqa: E731
    data.write_text("".join(json.dumps({"messages": turns(i)}) + "\n" for i in range(16)))
    with studio(chat_base, tmp_path / "data") as server:
        b = browser
        b.get(server.url + "/studio/")
        wait_until(lambda: b.execute_script("return document.body.dataset.ready") == "1", 30)
        b.find_element(By.ID, "tab-train").click()
        b.find_element(By.ID, "upload-file").send_keys(str(data))
        wait_until(lambda: "16 conversations" in text(b, "#upload-status"), 20)
        assert Select(b.find_element(By.ID, "task")).first_selected_option.text == "chat"
        assert not b.find_element(By.ID, "column-choice").is_displayed()
        assert "user: q0 | assistant: no" in text(b, "#preview")
        for element_id, value in {"job-name": "chatty", "num_virtual_tokens": "3", "steps": "2", "batch_size": "4"}.items():  # fmt: skip
            field = b.find_element(By.ID, element_id)
            field.clear()
            field.send_keys(value)
        b.find_element(By.ID, "start-button").click()
        wait_until(lambda: text(b, "#stat-state") == "finished", 120, 0.2)
        b.find_element(By.ID, "tab-prompts").click()
        wait_until(lambda: b.find_elements(By.CSS_SELECTOR, '#prompt-table tr[data-name="chatty"]'), 20)
        b.find_element(By.CSS_SELECTOR, '#prompt-table tr[data-name="chatty"]').click()
        assert b.find_element(By.ID, "new-chat").is_displayed()
        for message, turns_shown in (("hello", 2), ("again", 4)):  # the conversation goes on
            b.find_element(By.ID, "try-text").send_keys(message)
            b.find_element(By.ID, "try-button").click()
            wait_until(lambda n=turns_shown: len(b.find_elements(By.CSS_SELECTOR, "#soft-result .turn")) == n, 30)
            wait_until(lambda n=turns_shown: len(b.find_elements(By.CSS_SELECTOR, "#hard-result .turn")) == n, 30)
        assert "user: hello" in text(b, "#soft-result") and "assistant:" in text(b, "#soft-result")
        assert "Soft prompt: chatty (chat, T=3)" in text(b, "#soft-result h3")
        assert "Base model, no prompt" in text(b, "#hard-result h3")
        shot(b, "7-chat-box")
        b.find_element(By.ID, "new-chat").click()
        assert not b.find_elements(By.CSS_SELECTOR, "#soft-result .turn")
