"""The validated contract: the stack-config sections, the v1 file models, the service-folder loader and
the VM size facts. Pure pydantic: no Pulumi, no processes. Every other layer reads these models."""
