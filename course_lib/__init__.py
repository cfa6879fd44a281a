"""course_lib: the small library behind the course notebooks.

Notebooks tell the story; the reusable pieces live here, one module per topic:

- ``paths``       where data, checkpoints and runs live (``COURSE_DATA``)
- ``data``        ``load_dataset`` for MNIST, Fashion-MNIST, CIFAR, downsampled ImageNet, ...
- ``augment``     batched augmentation, each image with its own random parameters
- ``loader``      an in-memory batch loader (no per-sample PIL work)
- ``train``       ``fit``, callbacks, ``History``, ``seed_everything``, ``get_device``
- ``metrics``     accuracy, top-k, confusion matrix (scikit-learn where it has them)
- ``plots``       learning curves, confusion matrices, image grids
- ``checkpoints`` checkpoints with provenance and ``load_or_train``
- ``profiles``    the ``smoke`` / ``quick`` / ``full`` run profiles
- ``results``     per-notebook results JSON and the course-wide RESULTS.md

Importing the package is cheap and never touches the network; submodules are
imported on demand (``from course_lib import data``).
"""

__version__ = "0.1.0"
