"""The HTTP contract of groups, part of :class:`~tests.web.http_contract.HTTPContract`.

``GET groups/{group_id}`` and group items (``{"group_id", "token"}``) in the batch and the
multi-job stream, as an HTTP client sees them, over the store the contract configures.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import immortus
from immortus import lifecycle
from immortus.groups import GroupStatus
from immortus.stores.base import Store
from immortus.web import MAX_BATCH, Verifier
from tests.web.contract_jobs import events_of

__all__ = ["GroupsContract"]

#: The contract's tracked class (the store strategy tracks it).
REPORT_CLASS = "contract.report"
#: The contract's group: three members, ``g-1`` finished, ``g-2`` started, ``g-3`` failed.
GROUP = "import-7"


def _unknown(group_id: str) -> dict[str, Any]:
    return GroupStatus.unknown(group_id).to_dict()


class GroupsContract:
    """A group's route and a group's items on the batch and the multi-job stream."""

    @pytest.fixture
    def group(self, jobs: Store) -> Store:
        """Group :data:`GROUP`: ``g-1`` finished, ``g-2`` started, ``g-3`` failed."""
        for job_id in ("g-1", "g-2", "g-3"):
            immortus.add_to_group(GROUP, job_id, REPORT_CLASS)
        lifecycle.job_started("g-1", REPORT_CLASS)
        lifecycle.job_finished("g-1", REPORT_CLASS)
        lifecycle.job_started("g-2", REPORT_CLASS)
        lifecycle.job_started("g-3", REPORT_CLASS)
        lifecycle.job_failed("g-3", ValueError("row 17: bad date"), REPORT_CLASS)
        return jobs

    def test_a_group_answers_its_aggregate_body(self, http: httpx.Client, group: Store) -> None:
        response = http.get(f"groups/{GROUP}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["group_id"] == GROUP
        assert body["status"] == "started"
        assert (body["completed"], body["total"]) == (2, 3)
        assert body["jobs"] == {"finished": 1, "started": 1, "failed": 1}
        assert body["error"] == {"type": "ValueError", "message": "row 17: bad date"}

    def test_an_unknown_group_is_the_404_of_a_bad_token(
        self, http: httpx.Client, secret: Verifier, group: Store
    ) -> None:
        assert secret.tokens is not None
        tokens = {
            "none": None,
            "forged": "v1.9999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "a job's token of that id": secret.token_for(GROUP),
            "another group's": secret.tokens.sign_group("import-8"),
        }
        answers = set()
        for name, token in tokens.items():
            params = {} if token is None else {"token": token}
            response = http.get(f"groups/{GROUP}", params=params)
            assert response.status_code == 404, name
            answers.add(response.content)
        nobody = http.get("groups/nobody", params={"token": secret.tokens.sign_group("nobody")})
        assert nobody.status_code == 404
        assert nobody.json() == _unknown("nobody")
        assert len(answers) == 1
        assert httpx.Response(200, content=answers.pop()).json() == _unknown(GROUP)
        good = http.get(f"groups/{GROUP}", params={"token": secret.tokens.sign_group(GROUP)})
        assert good.status_code == 200
        assert good.json()["total"] == 3

    def test_a_group_token_opens_no_job_of_the_same_id(
        self, http: httpx.Client, secret: Verifier
    ) -> None:
        assert secret.tokens is not None
        lifecycle.job_enqueued("twin", REPORT_CLASS)
        immortus.add_to_group("twin", "twin-member", REPORT_CLASS)
        group_token = secret.tokens.sign_group("twin")
        assert http.get("verify/twin", params={"token": group_token}).status_code == 404
        assert http.get("groups/twin", params={"token": group_token}).status_code == 200

    @pytest.mark.parametrize("hostile", [" lead", "a" * 300, "tab\there", "x\u2028y"])
    def test_a_hostile_group_id_is_a_400_naming_it(
        self, http: httpx.Client, jobs: Store, hostile: str
    ) -> None:
        response = http.get("groups/" + quote(hostile, safe=""))
        assert response.status_code == 400
        body = response.json()
        assert body["error"]["type"] == "InvalidInput"
        assert "group id" in body["error"]["message"]
        assert "Traceback" not in response.text

    def test_a_batch_mixes_jobs_and_groups(self, http: httpx.Client, group: Store) -> None:
        asked = [
            {"job_id": "job-1", "job_class": REPORT_CLASS},
            {"group_id": GROUP},
            {"group_id": "nobody"},
        ]
        answers = http.post("verify", json={"jobs": asked}).json()["jobs"]
        assert [answer["status"] for answer in answers] == ["started", "started", "unknown"]
        assert answers[1]["total"] == 3
        assert answers[2] == _unknown("nobody")

    def test_an_item_naming_a_job_and_a_group_is_a_400(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        asked = [{"job_id": "job-1"}, {"job_id": "job-1", "group_id": GROUP}]
        response = http.post("verify", json={"jobs": asked})
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("jobs[1]")

    def test_groups_count_against_the_item_limit(self, http: httpx.Client, jobs: Store) -> None:
        asked = [{"group_id": f"g-{number}"} for number in range(MAX_BATCH + 1)]
        response = http.post("verify", json={"jobs": asked})
        assert response.status_code == 400
        assert str(MAX_BATCH) in response.json()["error"]["message"]

    def test_a_group_on_the_stream_ends_when_its_last_member_does(
        self, http: httpx.Client, secret: Verifier, group: Store
    ) -> None:
        assert secret.tokens is not None
        asked = [
            {"group_id": GROUP, "token": secret.tokens.sign_group(GROUP)},
            {"job_id": "job-1", "job_class": REPORT_CLASS,
             "token": secret.token_for("job-1", REPORT_CLASS)},
            {"group_id": GROUP, "token": "v1.1.forged"},
        ]  # fmt: skip
        frames: list[dict[str, Any]] = []
        events: list[str] = []

        def finish() -> None:
            lifecycle.job_finished("job-1", REPORT_CLASS)
            lifecycle.job_finished("g-2", REPORT_CLASS)

        with http.stream("POST", "stream", json={"jobs": asked}) as response:
            assert response.status_code == 200
            for event, data in events_of(response):
                events.append(event)
                if event == "job":
                    assert data is not None
                    frames.append(data)
                    if len(frames) == 3:
                        threading.Thread(target=finish).start()
        assert events[-1] == "end"
        first, job, forged = frames[:3]
        assert (first["index"], first["code"], first["body"]["completed"]) == (0, 200, 2)
        assert (job["index"], job["code"]) == (1, 200)
        assert forged == {"index": 2, "code": 404, "body": _unknown(GROUP)}
        last_of_group = [frame for frame in frames if frame["index"] == 0][-1]["body"]
        assert last_of_group["status"] == "failed"  # every member ended; one failed
        assert (last_of_group["completed"], last_of_group["total"]) == (3, 3)
        assert last_of_group["progress"]["percent"] == 100
