"""Recordings: reading captures (cryptofeed format), segment files, persister, replayer, exports."""
