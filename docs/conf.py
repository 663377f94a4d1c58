"""Sphinx configuration for the torch_balance documentation (``make docs``)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import torch_balance  # noqa: E402

project = "torch_balance"
author = "the torch_balance authors"
copyright = "the torch_balance authors"
version = release = torch_balance.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# autodoc: the public names only, with what they inherit from our own base classes (the epoch
# shell gives every sampler set_epoch and state_dict) but not from torch, imbalanced-learn,
# scikit-learn or the trainers.
autodoc_default_options = {
    "members": True,
    "inherited-members": (
        "Sampler,Dataset,IterableDataset,Generic,object,Callback,TrainerCallback,Module,"
        "BaseOverSampler,BaseSampler,BaseEstimator,SamplerMixin,OneToOneFeatureMixin,"
        "_MetadataRequester"
    ),
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
# The integrations need their trainer; the docs extra does not install them, so mock a trainer
# that is missing (an installed one is imported for real).
autodoc_mock_imports = [
    name
    for name in ("lightning", "pytorch_lightning", "transformers")
    if importlib.util.find_spec(name) is None
]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# "Attributes:" as fields, so that a property named there is not described twice
napoleon_use_ivar = True

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"(/plot_|quickstart\.py)",
    # smote_head.py trains a CNN for a minute: a script to run, not a gallery page
    "ignore_pattern": r"(smote_head|__init__)\.py",
    "download_all_examples": False,
    "write_computation_times": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "plot_gallery": "True",
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "alabaster"
html_title = f"torch_balance {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Class-imbalance tools for PyTorch data loading",
    "fixed_sidebar": True,
}
