"""Local mode (`aksinf serve`): the serving path on one machine, on 127.0.0.1 only — Envoy as a process,
model servers as processes scaled by the local actuator, and the Blob Storage emulator."""
