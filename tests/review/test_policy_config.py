"""`aksinf plan --policy-config FILE`: the `pulumi up --policy-pack-config` file, checked up front (every
problem keyed, nothing run on a bad file) and applied to the real analyzer run: a mandatory rule made
advisory no longer fails the plan, an advisory one made mandatory does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aksinf.cli import main as aksinf
from contract.errors import ConfigError
from policies.rules import ALL
from review import policy_config
from review.policy_config import SCHEMA_KEYWORDS, check, schema_problem

CLUSTER = "azure-native:containerservice:ManagedCluster"


def write(tmp_path: Path, document) -> Path:
    path = tmp_path / "policy-config.json"
    path.write_text(json.dumps(document))
    return path


def plan(stack: str, out: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = aksinf(["plan", "--stack", stack, "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def level_section(output: str, level: str) -> str:
    return output.split(f"Policies {level}:", 1)[1].split("Policies ", 1)[0]


def test_an_advisory_rule_made_mandatory_fails_the_plan(tmp_path, capsys):
    """dev runs kubenet: `aks-kubenet-retiring` is advisory in the pack, mandatory by the file."""
    code, output, _ = plan("dev", tmp_path / "plans", capsys)
    assert code == 0 and "[aks-kubenet-retiring]" in level_section(output, "advisory")
    config = write(tmp_path, {"aks-kubenet-retiring": {"enforcementLevel": "mandatory"}})
    code, output, _ = plan("dev", tmp_path / "plans", capsys, "--policy-config", str(config))
    assert code == 1
    assert "[aks-kubenet-retiring]" in level_section(output, "mandatory")
    assert "[aks-kubenet-retiring]" not in level_section(output, "advisory")


def _previous_plugin(plans: Path, plugin: str) -> None:
    """Rewrite the previous plan as if the protected prod cluster had been built with another network plugin."""
    path = plans / "prod.json"
    document = json.loads(path.read_text())
    [cluster] = [r for r in document["resources"] if r["type"] == CLUSTER]
    cluster["inputs"]["networkProfile"]["networkPlugin"] = plugin
    path.write_text(json.dumps(document))


def test_a_mandatory_rule_made_advisory_no_longer_fails_the_plan(tmp_path, capsys):
    plans = tmp_path / "plans"
    assert plan("prod", plans, capsys)[0] == 0
    _previous_plugin(plans, "kubenet")
    code, output, _ = plan("prod", plans, capsys)
    assert code == 1 and "[protected-cluster-force-new-change]" in level_section(output, "mandatory")
    _previous_plugin(plans, "kubenet")
    config = write(tmp_path, {"protected-cluster-force-new-change": "advisory"})
    code, output, _ = plan("prod", plans, capsys, "--policy-config", str(config))
    assert code == 0
    assert "[protected-cluster-force-new-change]" in level_section(output, "advisory")
    assert "Policies mandatory: 0 violation(s)" in output


def test_a_bad_file_is_every_problem_keyed_and_nothing_runs(tmp_path, capsys):
    config = write(tmp_path, {"aks-rbac-enabeld": "advisory", "all": "loud",
                              "devtest-cluster-size": {"enforcementLevel": "warn", "maxVcpus": 0, "maxCpus": 8}})
    code, output, err = plan("dev", tmp_path / "plans", capsys, "--policy-config", str(config))
    assert code == 2 and output == "" and not (tmp_path / "plans").exists()
    assert err.startswith(f"5 problem(s) in the policy config {config}:")
    assert "aks-rbac-enabeld: is not a rule of the pack; did you mean aks-rbac-enabled?" in err
    assert "all: is not an enforcement level; allowed: advisory, mandatory, disabled (got 'loud')" in err
    assert "devtest-cluster-size.enforcementLevel: is not an enforcement level" in err
    assert "devtest-cluster-size.maxVcpus: must be at least 1 (got 0)" in err
    assert "devtest-cluster-size.maxCpus: is not a property of devtest-cluster-size; allowed: enforcementLevel, maxVcpus" in err


@pytest.mark.parametrize("text, problem", [
    (None, "file not found"), ("{not json", "is not valid JSON: Expecting property name"), ("[]", "must be a JSON object"),
])
def test_a_file_that_is_no_config_is_one_keyed_problem(tmp_path, text, problem):
    path = tmp_path / "config.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        policy_config.read(path)
    [issue] = raised.value.issues
    assert issue.key == str(path) and problem in issue.problem


def test_all_sets_every_level_and_a_rule_entry_overrides_it():
    config = check({"all": "advisory", "aks-rbac-enabled": "mandatory", "devtest-cluster-size": {"maxVcpus": 8}}, "f")
    assert set(config) == {p.name for p in ALL}
    assert config["aks-rbac-enabled"] == {"enforcementLevel": "mandatory"}
    assert config["devtest-cluster-size"] == {"enforcementLevel": "advisory", "maxVcpus": 8}
    assert config["acr-admin-disabled"] == {"enforcementLevel": "advisory"}


def test_the_pack_uses_only_the_schema_keywords_the_check_knows():
    used = {keyword for p in ALL if p.config_schema for schema in p.config_schema.properties.values() for keyword in schema}
    assert used <= SCHEMA_KEYWORDS


@pytest.mark.parametrize("value, schema, problem", [
    (True, {"type": "integer"}, "must be a JSON integer"), ("8", {"type": "integer"}, "must be a JSON integer"),
    (0, {"type": "integer", "minimum": 1}, "must be at least 1"), (["a", 1], {"type": "array", "items": {"type": "string"}}, "item 1 must be a JSON string"),
    ("2027-02-30", {"type": "string", "format": "date"}, "must be a date"), (8, {"type": "integer", "minimum": 1}, None),
])
def test_schema_problems(value, schema, problem):
    assert schema_problem(value, schema) == problem if problem is None else problem in schema_problem(value, schema)
