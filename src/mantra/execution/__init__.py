"""Order entry on real venues: the account handler actor, its runner, credentials, checks."""
