"""The recall benchmark behind ``torch-balance bench`` and ``torch-balance inspect``.

Data flows one way through its modules:

- ``sources``: open a data source (digits, Fashion-MNIST, CIFAR-10, an image folder);
- ``split``: one seed's split (balanced test, imbalanced training, validation from it);
- ``recipes``: what a method is (its job, recipe and registry entry);
- ``methods``: the registry of methods (``erm``, ``over``, ``crt``, ``logit-adjust``, ...),
  with the long-tail losses of ``loss_methods`` (``la-loss``, ``ldam-drw``, ``tau-norm``, ...);
- ``train``: the small CNN, the step budget and the training loop every method shares;
- ``metrics``: the scores of one set of predictions;
- ``report``: the table, the JSON helpers, the plot and the ``inspect`` text;
- ``workers``: where the runs train: here, or ``--jobs`` spawned single-thread processes;
- ``settings``: ``BenchConfig``, each source's defaults, the options resolved and checked,
  and the command line that reproduces a run;
- ``runner``: the run loop of ``bench``, every seed and every method (a method the data
  cannot support is skipped, by name, and the others kept).
"""

from __future__ import annotations

from torch_balance.bench.methods import METHODS, Job, Method, check_methods, run_method
from torch_balance.bench.metrics import METRIC_NAMES, scores, thirds
from torch_balance.bench.runner import BenchConfig, run_bench
from torch_balance.bench.sources import DATASET_NAMES, Source, load_source
from torch_balance.bench.split import Split, long_tail_counts, make_split, step_counts
from torch_balance.bench.train import Budget, SmallCNN

__all__ = [
    "DATASET_NAMES",
    "METHODS",
    "METRIC_NAMES",
    "BenchConfig",
    "Budget",
    "Job",
    "Method",
    "SmallCNN",
    "Source",
    "Split",
    "check_methods",
    "load_source",
    "long_tail_counts",
    "make_split",
    "run_bench",
    "run_method",
    "scores",
    "step_counts",
    "thirds",
]
