"""Venue feeds: the blocking connection runner (``runner``) and the actor publishing into the spine (``actor``)."""
