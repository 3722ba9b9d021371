import pytest


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    # Wizard uploads land under MEDIA_ROOT: keep each test's files apart and disposable.
    settings.MEDIA_ROOT = str(tmp_path / "media")
