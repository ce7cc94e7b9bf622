"""Router fixtures: real Envoy and model servers on 127.0.0.1."""
