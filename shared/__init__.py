"""The move engine: state, queues, statuses, the one door to Azure. No Azure I/O decisions live in phases."""
