"""LIME: local surrogate explanations for tabular data, images and text, and submodular pick.

=========== ========================================================================================
module      what it holds
=========== ========================================================================================
tabular     :func:`lime_tabular`, the training statistics (:func:`fit_discretizer`) and the sampler
image       :func:`lime_image`, superpixels and perturbed images
text        :func:`lime_text`, tokenization (a regex or a tokenizer) and removal masks
labels      which outputs are fitted: ``targets``, or lime's ``labels``/``top_labels`` (one rule)
surrogate   the kernel and the Ridge(alpha=1) surrogate every variant fits (lime's ``LimeBase``)
selection   feature selection: forward selection, highest weights, lasso path
submodular  SP-LIME
=========== ========================================================================================

Every explainer returns an :class:`~xaijax.core.explanation.Explanation` of kind
``"surrogate"`` and follows the explainer contract of :mod:`xaijax.core.contract`.

References:
    Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
    Classifier, KDD 2016.
"""

from xaijax.core.masking import get_image_and_mask
from xaijax.lime.image import (
    fudged_image,
    lime_image,
    perturb_image,
    quickshift_defaults,
    segment_images,
)
from xaijax.lime.submodular import global_importance, submodular_pick
from xaijax.lime.surrogate import LimeFit, cosine_distance, explain_with_data, exponential_kernel
from xaijax.lime.tabular import TabularStats, fit_discretizer, lime_tabular, sample_neighbourhood
from xaijax.lime.text import TokenizedText, lime_text, removal_masks, text_from_mask, tokenize

__all__ = [
    "LimeFit",
    "TabularStats",
    "TokenizedText",
    "cosine_distance",
    "explain_with_data",
    "exponential_kernel",
    "fit_discretizer",
    "fudged_image",
    "get_image_and_mask",
    "global_importance",
    "lime_image",
    "lime_tabular",
    "lime_text",
    "perturb_image",
    "quickshift_defaults",
    "removal_masks",
    "sample_neighbourhood",
    "segment_images",
    "submodular_pick",
    "text_from_mask",
    "tokenize",
]
