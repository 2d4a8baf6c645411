import pytest

# The shared contracts are imported by test modules: let pytest explain their failed asserts.
pytest.register_assert_rewrite("tests.web.http_contract", "tests.web.contract_jobs")
