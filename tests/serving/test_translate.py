"""The v1-service translations shared by local mode and the cluster: autoscaling settings per purpose."""

from contract.service import load_service
from serving.translate import autoscale_settings as settings_for


def test_devtest_purpose_turns_autoscaling_off():
    service = load_service("examples/models/diabetes", "diabetes")
    assert service.deployment.autoscale_on
    assert settings_for(service, "DevTest").enabled is False
    assert settings_for(service, "FastProd").enabled is True
    assert settings_for(service, "DevTest").fixed_replicas == service.deployment.initial_replicas
