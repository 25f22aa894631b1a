"""Telemetry: log-bucket histograms of the runtime's timing records, `mantra top`."""
