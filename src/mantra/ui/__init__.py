"""The realtime UI: one web page over a running system or a recording (see ARCHITECTURE.md)."""
