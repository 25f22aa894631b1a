"""The spine: shared-memory rings and seqlock arrays, and the messages that travel on them."""

from .array import SeqArray, TornRead
from .layout import LayoutError
from .messages import REGISTRY, message
from .ring import Consumer, Producer, Ring

__all__ = ["Ring", "Producer", "Consumer", "SeqArray", "LayoutError", "REGISTRY", "message", "TornRead"]
