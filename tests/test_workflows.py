"""The GitHub Actions workflows are pinned and least-privileged, and the checks really catch a regression.

`make test` runs `zizmor --offline .github/workflows` before pytest; this module states the same rules in
plain Python so a failure names the file and the line:

- every remote `uses:` (step or reusable workflow) is `owner/repo[/path]@<40-hex commit>` with the
  version it stands for in a comment on the same line (`# v4.4.0`);
- every `actions/checkout` sets `persist-credentials: false`;
- every job has an explicit `permissions` block (or the workflow has a top-level one), never `write-all`;
  the top level grants nothing beyond read, `id-token: write` only where an OIDC login step runs, and
  `pull-requests: write` only where a step comments on the pull request.

The checks are proven not vacuous on a workflow written the way ours were before they were pinned.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
ZIZMOR = Path(sys.executable).parent / "zizmor"

SHA_PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@\s]+)?@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<quote>['\"]?)(?P<ref>[^\s'\"#]+)(?P=quote)\s*(?:#\s*(?P<comment>.*?))?\s*$")
VERSION_COMMENT = re.compile(r"^v?\d+(\.\d+)*\b")
# Steps that exchange the job's OIDC token for cloud or backend credentials.
OIDC_LOGIN_ACTIONS = ("azure/login", "aws-actions/configure-aws-credentials", "google-github-actions/auth", "pulumi/auth-actions")
# Steps that write to the pull request conversation.
PR_COMMENT_ACTIONS = ("marocchino/sticky-pull-request-comment", "peter-evans/create-or-update-comment", "thollander/actions-comment-pull-request")


def _load(text: str) -> dict:
    workflow = yaml.safe_load(text)
    assert isinstance(workflow, dict) and isinstance(workflow.get("jobs"), dict), "not a workflow with jobs"
    return workflow


def _is_remote(ref: str) -> bool:
    return not ref.startswith(("./", "docker://"))


def _action(ref: str) -> str:
    """`owner/repo` of a remote reference, lower-cased (GitHub treats owner and repo case-insensitively)."""
    return "/".join(ref.split("@", 1)[0].split("/")[:2]).lower()


def _steps(job: dict) -> list[dict]:
    return [step for step in job.get("steps") or [] if isinstance(step, dict)]


def _all_uses(workflow: dict) -> list[str]:
    refs = []
    for job in workflow["jobs"].values():
        if "uses" in job:  # a reusable workflow called as a job
            refs.append(job["uses"])
        refs.extend(step["uses"] for step in _steps(job) if "uses" in step)
    return refs


def _pinning_problems(text: str) -> list[str]:
    workflow = _load(text)
    problems = []
    lines = [(number, USES_LINE.match(line)) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, match) for number, match in lines if match]
    parsed = _all_uses(workflow)
    if sorted(match["ref"] for _, match in lines) != sorted(parsed):
        problems.append(f"the `uses:` lines {sorted(m['ref'] for _, m in lines)} are not the parsed ones {sorted(parsed)}")
    for number, match in lines:
        ref, comment = match["ref"], match["comment"]
        if ref.startswith("docker://"):
            if "@sha256:" not in ref:
                problems.append(f"line {number}: {ref} is not pinned to an image digest")
            continue
        if not _is_remote(ref):
            continue
        if not SHA_PINNED.match(ref):
            problems.append(f"line {number}: {ref} is not pinned to a full 40-hex commit SHA")
        if not comment or not VERSION_COMMENT.match(comment):
            problems.append(f"line {number}: {ref} has no version comment (`# v1.2.3`) on the same line")
    return problems


def _credential_problems(text: str) -> list[str]:
    workflow = _load(text)
    problems = []
    for name, job in workflow["jobs"].items():
        for step in _steps(job):
            checkout = _is_remote(step.get("uses", "./")) and _action(step["uses"]) == "actions/checkout"
            if checkout and (step.get("with") or {}).get("persist-credentials") is not False:
                problems.append(f"job {name}: checkout {step.get('with') or {}} keeps the token in .git/config")
    return problems


def _grants(permissions) -> dict[str, str]:
    if permissions in ({}, None):
        return {}
    if isinstance(permissions, str):  # read-all / write-all
        return {"*": permissions.split("-")[0]}
    return {scope: str(level) for scope, level in permissions.items()}


def _permission_problems(text: str) -> list[str]:
    workflow = _load(text)
    problems = []
    top = workflow.get("permissions", "<unset>")
    if top == "write-all":
        problems.append("top level: permissions: write-all")
    elif top != "<unset>":
        writes = sorted(scope for scope, level in _grants(top).items() if level not in ("read", "none"))
        if writes:
            problems.append(f"top level grants {writes} to every job; grant them per job")
    for name, job in workflow["jobs"].items():
        if "permissions" not in job:
            if top == "<unset>":
                problems.append(f"job {name}: no permissions block and no top-level one (the repository default applies)")
            continue
        if job["permissions"] == "write-all":
            problems.append(f"job {name}: permissions: write-all")
            continue
        grants = _grants(job["permissions"])
        actions = {_action(step["uses"]) for step in _steps(job) if _is_remote(step.get("uses", "./"))}
        if grants.get("id-token") == "write" and not actions & set(OIDC_LOGIN_ACTIONS):
            problems.append(f"job {name}: id-token: write without an OIDC login step")
        comments = actions & set(PR_COMMENT_ACTIONS) or any(
            str((step.get("with") or {}).get("comment-on-pr")).lower() == "true" for step in _steps(job)
        )
        if grants.get("pull-requests") == "write" and not comments:
            problems.append(f"job {name}: pull-requests: write without a step that comments on the pull request")
    return problems


def _problems(text: str) -> list[str]:
    return _pinning_problems(text) + _credential_problems(text) + _permission_problems(text)


def test_there_are_workflows():
    assert {path.name for path in WORKFLOWS} >= {"deploy.yml", "pull-request.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_remote_actions_are_pinned_to_a_commit_with_the_version_beside_it(path):
    assert _pinning_problems(path.read_text()) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_checkouts_do_not_persist_credentials(path):
    assert _credential_problems(path.read_text()) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_job_has_least_permissions(path):
    assert _permission_problems(path.read_text()) == []


# The shape our workflows had before this check existed: moving tags, credentials left in .git/config,
# broad top-level grants.
UNPINNED = """\
name: deploy
on: {push: {branches: [main]}}
permissions:
  contents: read
  id-token: write
jobs:
  up:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065
      - uses: azure/login@v2
      - uses: pulumi/actions@v6
        with: {command: up, comment-on-pr: false}
  lint:
    runs-on: ubuntu-latest
    permissions: write-all
    steps:
      - uses: ./.github/actions/local
  comment:
    runs-on: ubuntu-latest
    permissions: {contents: read, pull-requests: write, id-token: write}
    steps:
      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0
        with: {persist-credentials: true}
"""


def test_the_checks_catch_moving_tags_persisted_credentials_and_broad_permissions():
    problems = _problems(UNPINNED)
    pinning = [problem for problem in problems if "not pinned" in problem]
    assert {problem.split(": ", 1)[1].split(" ")[0] for problem in pinning} == {
        "actions/checkout@v4",
        "azure/login@v2",
        "pulumi/actions@v6",
    }
    assert any("setup-python@a26af69be951a213d495a4c3e4e4022e16d87065 has no version comment" in p for p in problems)
    assert sum("keeps the token" in problem for problem in problems) == 2
    assert any(problem.startswith("top level grants ['id-token']") for problem in problems)
    assert "job lint: permissions: write-all" in problems
    assert "job comment: id-token: write without an OIDC login step" in problems
    assert "job comment: pull-requests: write without a step that comments on the pull request" in problems
    assert not any("./.github/actions/local" in problem for problem in problems)  # local actions need no pin


def test_a_job_without_permissions_and_no_top_level_block_is_caught():
    text = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: true\n"
    assert _permission_problems(text) == ["job build: no permissions block and no top-level one (the repository default applies)"]


def _zizmor(root: Path) -> subprocess.CompletedProcess:
    # As `make test` runs it. --offline: no network, no GitHub token (the online audits are skipped).
    # zizmor only collects workflows that sit under .github/workflows, so copies keep that layout.
    return subprocess.run(
        [str(ZIZMOR), "--offline", ".github/workflows"], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )


def test_zizmor_offline_is_clean_here_and_fails_on_an_unpinned_copy(tmp_path):
    clean = tmp_path / "clean"
    shutil.copytree(ROOT / ".github" / "workflows", clean / ".github" / "workflows")
    result = _zizmor(clean)
    assert result.returncode == 0, result.stdout + result.stderr

    broken = tmp_path / "broken"
    shutil.copytree(clean, broken)
    deploy = broken / ".github" / "workflows" / "deploy.yml"
    text = deploy.read_text()
    pinned = re.search(r"azure/login@[0-9a-f]{40} # \S+", text).group(0)
    deploy.write_text(text.replace(pinned, "azure/login@v2"))
    result = _zizmor(broken)
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout + result.stderr
