"""What a submission sees: the blends ``X`` (:class:`BlendSet`) and the :class:`Deblender` protocol.

``blendset`` holds :class:`BlendSet` and :func:`load_split`; ``protocol`` the
:class:`Deblender` protocol and the optional batch-loop helper
:func:`predict_in_batches`.
"""
from deblendkit.deblend.blendset import BlendSet, load_split
from deblendkit.deblend.protocol import Deblender, predict_in_batches

__all__ = ["BlendSet", "Deblender", "load_split", "predict_in_batches"]
