"""Root conftest: shared fixture modules, one per area (kept apart so areas don't collide)."""

pytest_plugins = [
    "tests.fixtures_pulumi",
    "tests.fixtures_router",
    "tests.fixtures_modeldata",
    "tests.fixtures_services",
]
