"""Coinbase (Advanced Trade and the Exchange feed): sans-IO market-data protocol and instrument metadata."""
