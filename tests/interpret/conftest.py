from tests.training.conftest import small_corpus  # noqa: F401 - the shared fixture
