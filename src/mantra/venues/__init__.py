"""Venue protocols (sans-IO state machines), simulators and instrument metadata, one package per venue."""
