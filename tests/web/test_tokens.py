from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

import immortus
from immortus.exceptions import ConfigurationError, InvalidInput, InvalidJobClass, InvalidJobId
from immortus.web.tokens import (
    CLOCK_SKEW,
    MAX_ACCEPTED,
    MAX_TOKEN_LENGTH,
    JobTokens,
    plain_token,
)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(clock: Clock) -> JobTokens:
    return JobTokens("s3cret", max_age=60, clock=clock)


def test_a_token_opens_its_job_and_class_only(tokens: JobTokens) -> None:
    plain = tokens.sign("job-a")
    classed = tokens.sign("job-a", "reports.build")
    assert tokens.check(plain, "job-a")
    assert tokens.check(classed, "job-a", "reports.build")
    assert not tokens.check(plain, "job-b")
    assert not tokens.check(plain, "job-a", "reports.build")
    assert not tokens.check(classed, "job-a")
    assert not tokens.check(classed, "job-a", "reports.other")
    assert not tokens.check(classed, "job-b", "reports.build")


def test_fields_cannot_slide_into_each_other(tokens: JobTokens) -> None:
    token = tokens.sign("ab", "c.d")
    assert not tokens.check(token, "abc", ".d")
    assert not tokens.check(token, "a", "bc.d")


def test_a_token_opens_for_its_subject_only(tokens: JobTokens) -> None:
    alice = tokens.sign("job-a", "reports.build", "alice")
    anyone = tokens.sign("job-a", "reports.build")
    assert tokens.check(alice, "job-a", "reports.build", "alice")
    assert tokens.check(anyone, "job-a", "reports.build")
    assert not tokens.check(alice, "job-a", "reports.build", "bob")
    assert not tokens.check(alice, "job-a", "reports.build")  # no subject is another subject
    assert not tokens.check(alice, "job-a", "reports.build", "")
    assert not tokens.check(anyone, "job-a", "reports.build", "alice")
    assert not tokens.check(anyone, "job-a", "reports.build", "")
    assert not tokens.check(tokens.sign("job-a", None, ""), "job-a")
    assert not tokens.check(alice, "job-b", "reports.build", "alice")
    assert not tokens.check(alice, "job-a", None, "alice")


def test_a_subject_cannot_slide_into_the_other_fields(tokens: JobTokens) -> None:
    token = tokens.sign("ab", "c.d", "e")
    assert not tokens.check(token, "ab", "c.de")
    assert not tokens.check(token, "ab", "c.d", "e\0")
    assert not tokens.check(token, "abe", "c.d")


def test_tokens_of_no_subject_keep_the_format_of_old(clock: Clock) -> None:
    """A no-subject token is exactly the token signed before subjects existed (pinned MAC)."""
    tokens = JobTokens("s3cret", max_age=60, clock=clock)
    assert tokens.sign("job-a", "reports.build") == (
        "v1.1800000060.lzSCer--Mh499Qaf-nG7nyxqDwvoQS3keskOphjtQqE"
    )
    assert tokens.sign("job-a") == "v1.1800000060.cQHI6F8m8PtMIDZpPXo_O9GWY5oWHCTsg4vzt3P4uKU"


@pytest.mark.parametrize("subject", ["", "42", "sess:é" * 40, "\ud800", "x" * 10_000])
def test_any_text_is_a_subject(tokens: JobTokens, subject: str) -> None:
    token = tokens.sign("job", None, subject)
    assert tokens.check(token, "job", None, subject)
    assert not tokens.check(token, "job", None, subject + "x")
    assert len(token) < MAX_TOKEN_LENGTH  # the subject is signed, never carried


def test_a_subject_that_is_not_text(tokens: JobTokens) -> None:
    with pytest.raises(InvalidInput, match="subject must be a string or None, not int"):
        tokens.sign("job", None, 42)  # type: ignore[arg-type]
    token = tokens.sign("job", None, "42")
    assert tokens.check(token, "job", None, 42) is False  # type: ignore[arg-type]
    assert tokens.check(token, "job", None, b"42") is False  # type: ignore[arg-type]


def test_the_token_is_url_safe_text_of_bounded_length(tokens: JobTokens) -> None:
    token = tokens.sign("x" * 255, "y" * 255)
    version, expiry, mac = token.split(".")
    assert version == "v1"
    assert expiry.isdigit()
    assert len(mac) == 43
    assert set(mac) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(token) < MAX_TOKEN_LENGTH


def test_tokens_expire(tokens: JobTokens, clock: Clock) -> None:
    token = tokens.sign("job")
    clock.now += 60
    assert tokens.check(token, "job")
    clock.now += 1
    assert not tokens.check(token, "job")


def test_a_token_living_longer_than_max_age_allows_is_refused(clock: Clock) -> None:
    long_lived = JobTokens("s3cret", max_age=3600, clock=clock).sign("job")
    short = JobTokens("s3cret", max_age=60, clock=clock)
    assert not short.check(long_lived, "job")
    skewed = JobTokens("s3cret", max_age=60 + CLOCK_SKEW, clock=clock).sign("job")
    assert short.check(skewed, "job")


def test_another_secret_opens_nothing(tokens: JobTokens, clock: Clock) -> None:
    other = JobTokens("other", max_age=60, clock=clock)
    assert not other.check(tokens.sign("job"), "job")
    same = JobTokens(b"s3cret", max_age=60, clock=clock)
    assert same.check(tokens.sign("job"), "job")


def test_tampered_tokens_fail(tokens: JobTokens) -> None:
    token = tokens.sign("job")
    version, expiry, mac = token.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    later = str(int(expiry) + 1)
    for forged in (
        f"{version}.{expiry}.{flipped}",
        f"{version}.{later}.{mac}",
        f"v2.{expiry}.{mac}",
        f"{version}.{expiry}.{mac}=",
        f"{version}.{expiry}.{mac}.x",
        f"{version}.+{expiry}.{mac}",
        f"{version}.{expiry}.{mac[:-1]}",
    ):
        assert not tokens.check(forged, "job"), forged


@pytest.mark.parametrize(
    "token",
    [None, 42, b"v1.1.x", "", ".", "..", "v1..", "v1.\u0661\u0662.x", "é" * 10, "v1.9" * 100],
)
def test_malformed_tokens_are_false_never_errors(tokens: JobTokens, token: object) -> None:
    assert tokens.check(token, "job") is False


def test_overlong_tokens_are_refused_before_any_work(tokens: JobTokens) -> None:
    token = tokens.sign("job")
    assert not tokens.check(token + "A" * (MAX_TOKEN_LENGTH - len(token) + 1), "job")


def test_checking_odd_names_is_false_not_an_error(tokens: JobTokens) -> None:
    token = tokens.sign("job")
    assert not tokens.check(token, "\ud800")
    assert not tokens.check(token, "job", "\udcff")


def test_sign_refuses_malformed_names(tokens: JobTokens) -> None:
    with pytest.raises(InvalidJobId):
        tokens.sign("")
    with pytest.raises(InvalidJobClass):
        tokens.sign("job", "has space")


@pytest.mark.parametrize(
    ("secret", "max_age"),
    [("", 60.0), (b"", 60.0), (None, 60.0), ("k", 0.0), ("k", -1.0), ("k", float("inf"))],
)
def test_unusable_settings_are_refused(secret: str, max_age: float) -> None:
    with pytest.raises(ConfigurationError):
        JobTokens(secret, max_age=max_age)


def test_the_key_never_shows() -> None:
    assert "s3cret" not in repr(JobTokens("s3cret"))
    settings = immortus.configure(secret_key="s3cret")  # noqa: S106
    assert "s3cret" not in repr(settings)


def test_config_validates_the_token_settings() -> None:
    with pytest.raises(ConfigurationError, match="secret_key must not be empty"):
        immortus.configure(secret_key="")
    with pytest.raises(ConfigurationError, match="secret_key must be"):
        immortus.configure(secret_key=42)
    with pytest.raises(ConfigurationError, match="token_max_age"):
        immortus.configure(token_max_age=0)
    with pytest.raises(ConfigurationError, match="token_max_age"):
        immortus.configure(token_max_age=True)
    settings = immortus.configure(secret_key=b"k", token_max_age=5)
    assert (settings.secret_key, settings.token_max_age) == (b"k", 5)
    assert immortus.Config().secret_key is None
    assert immortus.Config().token_max_age == 86400


@given(
    token=st.text(max_size=300),
    job_id=st.text(max_size=50),
    job_class=st.none() | st.text(),
    subject=st.none() | st.text(),
)
def test_check_never_raises(
    token: str, job_id: str, job_class: str | None, subject: str | None
) -> None:
    tokens = JobTokens("s3cret")
    assert tokens.check(token, job_id, job_class, subject) is False


def test_a_token_has_one_spelling(tokens: JobTokens) -> None:
    """The expiry once parsed with ``int()``: ``v1.0<expiry>`` opened the job too."""
    token = tokens.sign("job")
    _, expiry, mac = token.split(".")
    for respelled in (
        f"v1.0{expiry}.{mac}",
        f"v1.00{expiry}.{mac}",
        f"v1. {expiry}.{mac}",
        f"v1.{expiry} .{mac}",
        f" {token}",
        f"{token}\n",
        f"V1.{expiry}.{mac}",
        f"v1.{expiry}.{mac.swapcase()}",
    ):
        assert not tokens.check(respelled, "job"), respelled


def _respellings(token: str) -> st.SearchStrategy[str]:
    """Texts near ``token``: one character inserted, removed or replaced; a piece around it."""
    alphabet = st.sampled_from(list("0123456789.=-_+ \n\tvVAaZz/é\0"))
    position = st.integers(0, len(token))
    version, expiry, mac = token.split(".")
    return st.one_of(
        st.builds(lambda pad: f"{version}.{pad}{expiry}.{mac}", st.sampled_from(["0", "00", "+"])),
        st.builds(lambda i, c: token[:i] + c + token[i:], position, alphabet),
        st.builds(lambda i: token[:i] + token[i + 1 :], position),
        st.builds(lambda i, c: token[:i] + c + token[i + 1 :], position, alphabet),
        st.builds(lambda a, b: a + token + b, st.text(max_size=3), st.text(max_size=3)),
        st.text(max_size=80),
    )


@given(data=st.data())
def test_only_the_exact_signed_text_opens_the_job(data: st.DataObject) -> None:
    tokens = JobTokens("s3cret", max_age=60, clock=Clock())
    token = tokens.sign("job", "reports.build")
    other = data.draw(_respellings(token))
    assert tokens.check(other, "job", "reports.build") is (other == token)


@pytest.mark.parametrize(
    "token",
    [None, "", "garbage", "v1.0.x", "v1.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 3600],
)
def test_every_refusal_computes_the_mac(
    tokens: JobTokens, clock: Clock, monkeypatch: pytest.MonkeyPatch, token: str | int | None
) -> None:
    """A missing, malformed or expired token costs one HMAC, as a forged one does."""
    if isinstance(token, int):  # a good token, that many seconds later: expired
        signed, clock.now = tokens.sign("job"), clock.now + token
        token = signed
    computed: list[str] = []
    mac = JobTokens._mac

    def counted(self: JobTokens, *args: object) -> str:
        computed.append("mac")
        return mac(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(JobTokens, "_mac", counted)
    assert tokens.check(token, "job") is False
    assert computed == ["mac"]


def _counting_macs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count every HMAC any ``JobTokens`` computes from now on."""
    computed: list[str] = []
    mac = JobTokens._mac

    def counted(self: JobTokens, *args: object) -> str:
        computed.append("mac")
        return mac(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(JobTokens, "_mac", counted)
    return computed


def test_an_accepted_token_is_checked_again_without_the_mac(
    tokens: JobTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tokens.sign("job", "reports.build", "alice")
    computed = _counting_macs(monkeypatch)
    assert tokens.check(token, "job", "reports.build", "alice")
    assert tokens.check(token, "job", "reports.build", "alice")
    assert computed == ["mac"]


def test_a_remembered_token_expires_on_time(tokens: JobTokens, clock: Clock) -> None:
    token = tokens.sign("job")
    assert tokens.check(token, "job")  # remembered from here on
    clock.now += 60
    assert tokens.check(token, "job")
    clock.now += 1
    assert not tokens.check(token, "job")
    clock.now -= 1_000  # a clock set back: the expiry lies too far ahead to be signed now
    assert not tokens.check(token, "job")


def test_a_remembered_token_opens_nothing_else(
    tokens: JobTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tokens.sign("job", "reports.build", "alice")
    assert tokens.check(token, "job", "reports.build", "alice")
    computed = _counting_macs(monkeypatch)
    assert not tokens.check(token, "job", "reports.build", "bob")
    assert not tokens.check(token, "job", "reports.build", None)
    assert not tokens.check(token, "job", None, "alice")
    assert not tokens.check(token, "job", "reports.other", "alice")
    assert not tokens.check(token, "other", "reports.build", "alice")
    assert computed == ["mac"] * 5  # every refusal still computes the MAC


def test_another_key_does_not_share_what_one_remembers(clock: Clock) -> None:
    ours = JobTokens("s3cret", max_age=60, clock=clock)
    token = ours.sign("job")
    assert ours.check(token, "job")
    assert not JobTokens("other", max_age=60, clock=clock).check(token, "job")


def test_the_remembered_tokens_are_bounded(
    tokens: JobTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tokens.sign("job-first")
    assert tokens.check(first, "job-first")
    for number in range(MAX_ACCEPTED):
        job_id = f"job-{number}"
        assert tokens.check(tokens.sign(job_id), job_id)
    computed = _counting_macs(monkeypatch)
    assert tokens.check(first, "job-first")  # forgotten: checked with the MAC again
    assert computed == ["mac"]


def test_a_plain_token_query_is_read_as_it_is(tokens: JobTokens) -> None:
    token = tokens.sign("job")
    assert plain_token(f"token={token}") == token
    for other in (f"x=1&token={token}", f"token={token}&x=1", "token=a%2Eb", "token=a+b", ""):
        assert plain_token(other) is None  # the framework parses these


@given(st.text(alphabet="token=%+&;._~-abAB09 \u00e9", max_size=30))
def test_a_plain_token_is_what_parsing_the_query_gives(query: str) -> None:
    found = plain_token(query)
    if found is not None:
        parsed = parse_qs(query, keep_blank_values=True).get("token", [""])
        assert [found] == parsed


def test_a_group_token_opens_its_group_and_never_a_job(tokens: JobTokens) -> None:
    group = tokens.sign_group("batch-1")
    job = tokens.sign("batch-1")
    assert tokens.check_group(group, "batch-1")
    assert not tokens.check_group(group, "batch-2")
    assert not tokens.check(group, "batch-1")  # a group's token opens no job of that id
    assert not tokens.check_group(job, "batch-1")  # nor a job's token the group
    assert tokens.check(job, "batch-1")
    assert not tokens.check(group, "batch-1", "reports.build")


def test_a_remembered_group_token_still_opens_no_job(tokens: JobTokens) -> None:
    group = tokens.sign_group("batch-1", "alice")
    assert tokens.check_group(group, "batch-1", "alice")  # now remembered
    assert tokens.check_group(group, "batch-1", "alice")
    assert not tokens.check(group, "batch-1", None, "alice")
    assert not tokens.check_group(group, "batch-1", "bob")
    assert not tokens.check_group(group, "batch-1")


def test_a_group_token_expires(tokens: JobTokens, clock: Clock) -> None:
    group = tokens.sign_group("batch-1")
    assert tokens.check_group(group, "batch-1")
    clock.now += 61
    assert not tokens.check_group(group, "batch-1")


def test_a_malformed_group_id_is_refused_at_signing(tokens: JobTokens) -> None:
    with pytest.raises(InvalidInput):
        tokens.sign_group("")
    with pytest.raises(InvalidInput):
        tokens.sign_group("batch-1", 7)  # type: ignore[arg-type]
