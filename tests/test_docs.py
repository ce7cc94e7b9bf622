"""The README's generated parts match the code they are generated from."""


from components.egress import (
    BEGIN,
    END,
    _every_group_on,
    egress_allowlist,
    markdown_table,
)
from contract.stack import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def test_readme_egress_table_is_current():
    text = README.read_text()
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == markdown_table(egress_allowlist(_every_group_on(), "<acr>.azurecr.io"))
    assert "nvidia.github.io" in table and "AzureKubernetesService" in table


def _documented(text: str, key: str) -> bool:
    return any(form in text for form in (f"`{key}`", f"`{key}.", f".{key}`"))


def test_readme_documents_every_stack_key():
    from pydantic import BaseModel

    from contract.errors import unwrap_model as _unwrap
    from contract.stack import StackConfig

    text = README.read_text()
    missing = []

    def walk(model, path):
        for name, field in model.model_fields.items():
            key = field.alias or name
            if key == "location":
                continue
            if not _documented(text, key):
                missing.append(f"{path}{key}")
            inner = _unwrap(field.annotation)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                walk(inner, f"{path}{key}.")

    walk(StackConfig, "")
    assert missing == []
