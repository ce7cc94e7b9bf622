"""The Kubernetes actuator: the scale subresource is patched only on a change."""


def test_kubernetes_scaler_patches_the_scale_subresource_only_on_change():
    from types import SimpleNamespace

    from router.actuators import KubernetesScaler

    class FakeApps:
        def __init__(self):
            self.patches = []

        def read_namespaced_deployment(self, name, namespace):
            # 3 requested, 2 ready: utilization is computed over the ready ones
            return SimpleNamespace(spec=SimpleNamespace(replicas=3), status=SimpleNamespace(ready_replicas=2, replicas=3))

        def patch_namespaced_deployment_scale(self, name, namespace, body):
            self.patches.append((namespace, name, body))

    apps = FakeApps()
    scaler = KubernetesScaler(apps, {"diabetes": ("models", "diabetes")})
    assert scaler.ready_replicas("diabetes") == 2 and scaler.target("diabetes") == 3
    scaler.scale("diabetes", 3)
    assert apps.patches == []
    scaler.scale("diabetes", 4)
    scaler.scale("diabetes", 4)
    assert apps.patches == [("models", "diabetes", {"spec": {"replicas": 4}})]
