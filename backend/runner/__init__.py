"""The job runner: run states, the lifecycle (the only writer of run state), executors and worker processes."""
