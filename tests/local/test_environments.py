"""What a conda file asks a local environment for (local.environments), without building one."""

from __future__ import annotations

import pytest

from local.environments import conda_requirement, requirements_from_conda, requirements_from_environment

CONDA = """\
# v1 environment, as the notebooks wrote them
name: project_environment
channels:
  - conda-forge
dependencies:
  - python=3.6.2
  - pip
  - scikit-learn=0.19.1
  - conda-forge::numpy==1.23.5
  - pytorch=1.13=py3.8_cuda11.7_cudnn8.5.0_0
  - cudatoolkit=11.8
  - libgcc-ng
  - pip:
      - azureml-defaults==1.44.0
      - inference-schema[numpy-support]
"""


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("numpy", "numpy"),
        ("numpy=1.23", "numpy==1.23.*"),  # conda's `=` is a prefix match
        ("numpy=1.23.*", "numpy==1.23.*"),
        ("numpy==1.23.5", "numpy==1.23.5"),
        ("numpy>=1.20,<2", "numpy>=1.20,<2"),
        ("numpy 1.23.*", "numpy==1.23.*"),
        ("numpy=1.23.5=py311h1234_0", "numpy==1.23.5.*"),  # build strings dropped
        ("conda-forge::pandas=2.1", "pandas==2.1.*"),
        ("pytorch=2.1", "torch==2.1.*"),  # renamed on PyPI
        ("py-xgboost", "xgboost"),
        ("cudatoolkit=11.8", None),  # conda only
        ("libgcc-ng", None),
    ],
)
def test_conda_specs_become_pypi_requirements(spec, expected):
    assert conda_requirement(spec) == expected


def test_a_conda_file_gives_python_pip_and_mapped_packages_with_their_lines():
    requirements = requirements_from_conda(CONDA, "myenv.yml")
    assert (requirements.python, requirements.python_where) == ("3.6.2", "myenv.yml:6")
    assert requirements.pip == ("azureml-defaults==1.44.0", "inference-schema[numpy-support]")
    assert requirements.conda == (
        ("scikit-learn==0.19.1.*", "scikit-learn=0.19.1", "myenv.yml:8"),
        ("numpy==1.23.5", "conda-forge::numpy==1.23.5", "myenv.yml:9"),
        ("torch==1.13.*", "pytorch=1.13=py3.8_cuda11.7_cudnn8.5.0_0", "myenv.yml:10"),
    )
    assert requirements.install == ["scikit-learn==0.19.1.*", "numpy==1.23.5", "torch==1.13.*",
                                    "azureml-defaults==1.44.0", "inference-schema[numpy-support]"]
    assert requirements.notes() == [
        "myenv.yml:11: `cudatoolkit=11.8` exists only as a conda package; left out locally (the image installs it)",
        "myenv.yml:12: `libgcc-ng` exists only as a conda package; left out locally (the image installs it)",
    ]


@pytest.mark.parametrize("entry, request_", [("python", None), ("python=3.8", "3.8"), ("python 3.8.*", "3.8"), ("python>=3.8", ">=3.8")])
def test_the_python_version_request(entry, request_):
    assert requirements_from_conda(f"dependencies:\n  - {entry}\n", "c.yml").python == request_


def test_a_v1_environment_object_is_read_like_a_conda_file():
    environment = {"python": {"condaDependencies": {"dependencies": ["python=3.11", "cudatoolkit", {"pip": ["joblib==1.3.2"]}]}}}
    requirements = requirements_from_environment(environment)
    assert requirements.python == "3.11" and requirements.pip == ("joblib==1.3.2",)
    assert requirements.unmapped == (("cudatoolkit", "environment.python.condaDependencies.dependencies[1]"),)
    assert requirements_from_environment({"python": {"userManagedDependencies": True}}).install == []
