"""Trade models (each an Actor writing ideal orders; see ``trading.model``)."""
