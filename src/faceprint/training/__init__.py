"""Training and fine-tuning: the ``[train]`` extra, ``pip install 'faceprint[train]'``.

Why a separate extra: training needs PyTorch (hundreds of MB to GBs), which recognition
never does; ``import faceprint`` must stay light. So torch is imported only by the
modules of this package, and importing this package itself imports no torch either:
import a submodule (``faceprint.training.dlib_resnet``) to use it. When torch is
missing, that import raises :class:`~faceprint.errors.MissingExtraError` naming the
command above.

The submodules, in the order a run uses them: :mod:`.data` (a folder of people to aligned
context chips, the person-disjoint split, P x K batches), :mod:`.augment` (seeded
augmentations of those chips; numpy and OpenCV only), :mod:`.dlib_resnet` (the torch twin
of dlib's ResNet), :mod:`.losses` (online-mined triplets, CosFace), :mod:`.finetune` (the
loop: distillation, validation, early stopping, checkpoints) and :mod:`.export` (the
MODEL_DIR that ``--embedder`` loads). ``faceprint train`` drives them.

Conventions shared by the submodules: crops are RGB ``uint8`` ``(N, H, W, 3)`` (NHWC)
numpy arrays as :func:`faceprint.alignment.align` returns them; tensors fed to networks
are float32 **NCHW**; embeddings are compared by cosine similarity of L2-normalised
vectors, as everywhere in faceprint.
"""

__all__: list[str] = []
