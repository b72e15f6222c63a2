"""What a submission sees: the blends ``X`` (:class:`BlendSet`) and the :class:`Deblender` protocol.

``blendset`` holds :class:`BlendSet` and :func:`load_split`; ``protocol`` the
:class:`Deblender` protocol and the optional batch-loop helper
:func:`predict_in_batches`; ``amplitudes`` :func:`refit_amplitudes`, the
least-squares flux of each galaxy per band for given shapes (a step any
method can end with). The subpackage ``forward_model`` is the
forward-model deblender (constraints, PSF kernels, rendering, the fits, the
gain, its ``Deblender`` class), which the ``forward_model`` submission
re-exports and other submissions may build on; it is not imported here.
"""
from deblendkit.deblend.amplitudes import refit_amplitudes
from deblendkit.deblend.blendset import BlendSet, load_split
from deblendkit.deblend.protocol import Deblender, predict_in_batches

__all__ = ["BlendSet", "Deblender", "load_split", "predict_in_batches", "refit_amplitudes"]
