"""Bitstamp: sans-IO market-data protocol and instrument metadata."""
