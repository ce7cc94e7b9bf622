"""The discovery contract: model Service annotations, EndpointSlices and key Secrets in, routes out."""

import base64

from router.autoscaler import AutoscaleSettings
from router.discovery import (
    MODEL_SERVICE_LABEL,
    SERVICE_NAME_LABEL,
    annotations_for,
    discover,
)
from router.spec import Endpoint, ServiceRoute

AUTOSCALE = AutoscaleSettings(
    min_replicas=2, max_replicas=5, target_utilization=0.6, refresh_seconds=1, scale_down_window_seconds=120,
    max_concurrent=2, fixed_replicas=2,
)


def _service(name="diabetes", namespace="models", labelled=True):
    return {
        "metadata": {
            "name": f"{name}-svc",
            "namespace": namespace,
            "labels": {MODEL_SERVICE_LABEL: "true"} if labelled else {},
            "annotations": annotations_for(
                ServiceRoute(name, namespace, auth="key", scoring_timeout_ms=5000, max_concurrent=2, max_queue_wait_ms=800),
                deployment=f"{name}-deploy", autoscale=AUTOSCALE, keys_secret=f"{name}-keys",
            ),
        }
    }


def test_discovery_reads_the_contract():
    slice_ = {
        "metadata": {"name": "diabetes-svc-abc", "namespace": "models", "labels": {SERVICE_NAME_LABEL: "diabetes-svc"}},
        "ports": [{"name": "http", "port": 5001}, {"name": "metrics", "port": 9000}],
        "endpoints": [
            {"addresses": ["10.244.1.7"], "conditions": {"ready": True}},
            {"addresses": ["10.244.2.9"], "conditions": {"ready": False}},  # not ready: not routed
        ],
    }
    secret = {
        "metadata": {"name": "diabetes-keys", "namespace": "models"},
        "data": {"primaryKey": base64.b64encode(b"p" * 32).decode(), "secondaryKey": base64.b64encode(b"s" * 32).decode()},
    }
    found = discover([_service(), _service("other", labelled=False)], [slice_], [secret])
    assert len(found) == 1
    route = found[0].route
    assert route == ServiceRoute("diabetes", "models", "key", ("p" * 32, "s" * 32), 5000, 2, 800, (Endpoint("10.244.1.7", 5001),))
    assert found[0].deployment == "diabetes-deploy"
    assert found[0].autoscale == AUTOSCALE
