"""Kraken spot: sans-IO market-data protocol (WebSocket v1 and v2) and instrument metadata."""
