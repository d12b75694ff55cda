"""Kernels: pure functions on ndarrays.

``reference`` holds the formulas as plain loops (the oracle); ``conv2d``, ``conv_transpose2d``
(conv2d's kernels with the passes exchanged), ``upsample``, ``pool``, ``dense``, ``activations``,
``losses`` and ``norm`` hold the fast twins.  Kernels never import layers, and trust
their arguments: validation lives in :mod:`nptl.ops`.

Names: the kernel behind ``ops.<op>`` is ``<op>_forward``, behind ``ops.<op>_backward`` it is
``<op>_backward``, returning every gradient in the order ``(dx, dw, db)``; the partial ones are
``<op>_backward_input`` (``dx``) and ``<op>_backward_weight`` (``(dw, db)``).  A loss kernel
``<loss>_forward`` returns ``(loss, gradient)`` as the loss op does.  ``schedule`` splits a batch
over threads for the GEMM-based kernels.
"""
