"""Bitfinex: sans-IO market-data protocol (WebSocket v2) and instrument metadata."""
