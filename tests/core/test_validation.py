from __future__ import annotations

import pytest

from immortus.exceptions import InvalidInput, InvalidJobClass, InvalidJobId
from immortus.validation import check_job_class, check_job_id, check_meta


@pytest.mark.parametrize(
    "job_id", ["7f0c9a", "x" * 255, "ünïcode-✓", "celery-task-id/with:punctuation", "a b"]
)
def test_good_job_ids(job_id: str) -> None:
    assert check_job_id(job_id) == job_id


@pytest.mark.parametrize(
    ("job_id", "match"),
    [
        ("", "must not be empty"),
        ("x" * 256, "256 characters long; the limit is 255"),
        ("line\nbreak", "non-printable"),
        ("nul\x00", "non-printable"),
        ("\u202eevil", "non-printable"),
        (" lead", "spaces"),
        (None, "must be a string"),
        (b"bytes", "must be a string"),
    ],
)
def test_bad_job_ids(job_id: object, match: str) -> None:
    with pytest.raises(InvalidJobId, match=match):
        check_job_id(job_id)


def test_job_class_refuses_spaces_but_takes_dotted_and_colon_paths() -> None:
    assert check_job_class("app.tasks:send_mail") == "app.tasks:send_mail"
    with pytest.raises(InvalidJobClass):
        check_job_class("os.system rm")
    with pytest.raises(InvalidJobClass):
        check_job_class("x" * 256)


def test_invalid_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        check_job_id("")


def test_meta_must_be_json_with_string_keys_and_bounded() -> None:
    assert check_meta({"rows": [1, 2], "file": None}) == {"rows": [1, 2], "file": None}
    with pytest.raises(InvalidInput, match="JSON-serialisable"):
        check_meta({"when": object()})
    with pytest.raises(InvalidInput, match="JSON-serialisable"):
        check_meta({"ratio": float("nan")})
    with pytest.raises(InvalidInput, match="keys must be strings"):
        check_meta({1: "x"})
    with pytest.raises(InvalidInput, match="limit is 65536"):
        check_meta({"blob": "x" * 70_000})
    with pytest.raises(InvalidInput, match="must be a mapping"):
        check_meta(["not", "a", "mapping"])
