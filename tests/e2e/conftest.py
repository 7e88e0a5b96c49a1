"""Browser tests: Debian's Chromium driven by Playwright (it cannot download browsers here)."""

from pathlib import Path

import pytest

from tests.conftest import driving_settings, serve_app

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_url, ray_cluster):
    """The embedded service (it drives runs itself) on a loopback port."""
    settings = driving_settings(f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'site.db'}", redis_url)
    with serve_app(settings) as url:
        yield url


@pytest.fixture
def shoot(page):
    """Save a screenshot of the page as a test artifact; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return save
