"""Binance spot: sans-IO market-data protocol and instrument metadata."""
