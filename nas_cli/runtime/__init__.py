"""Run-time plumbing: devices, seeding, atomic IO, checkpoints, metrics, console."""
