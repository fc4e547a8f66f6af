"""ProtoPNet: prototypical part networks ("this looks like that"), trained and explained in JAX.

The backbones, the initialisation, the training epoch, the progress line and the checkpoint
format are the zoo's (:mod:`xaijax.zoo`); the command line is ``xaijax protopnet``
(:mod:`xaijax.cli.protopnet`). :func:`explain` (also :func:`explain_prototypes`) returns the
evidence for a batch of images as an :class:`~xaijax.core.explanation.Explanation` of kind
``"prototype"``, which :func:`explain_figure` draws. :func:`prototype_purity` measures whether
prototypes sit on objects of their class (where masks are known) and :func:`prune_prototypes` is
the paper's pruning step.

References:
    Chen, Li, Tao, Barnett, Su, Rudin. "This Looks Like That: Deep Learning for Interpretable
    Image Recognition." NeurIPS 2019.
"""

from xaijax.protopnet.evidence import explain_prototypes, high_activation_boxes
from xaijax.protopnet.losses import (
    LossCoefficients,
    LossTerms,
    cluster_cost,
    l1_wrong_class,
    protopnet_loss,
    separation_cost,
)
from xaijax.protopnet.model import (
    PlainCNN,
    ProtoPNet,
    ProtoPNetConfig,
    ReceptiveField,
    last_layer_init,
    log_similarity,
    prototype_class_identity,
    receptive_field,
    squared_distances,
)
from xaijax.protopnet.prune import PruneResult, prune_prototypes, select_prototypes
from xaijax.protopnet.purity import (
    PrototypePurity,
    fraction_on_mask,
    nearest_images,
    peak_distance,
    prototype_purity,
)
from xaijax.protopnet.push import PushResult, high_activation_box, push
from xaijax.protopnet.train import (
    TrainConfig,
    TrainResult,
    TrainState,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    stage_optimizer,
    train_last_layer,
    train_plain_cnn,
    train_protopnet,
)
from xaijax.protopnet.visualize import explain_figure, prototype_gallery

explain = explain_prototypes

__all__ = [
    "LossCoefficients",
    "LossTerms",
    "PlainCNN",
    "ProtoPNet",
    "ProtoPNetConfig",
    "PrototypePurity",
    "PruneResult",
    "PushResult",
    "ReceptiveField",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "cluster_cost",
    "evaluate",
    "explain",
    "explain_figure",
    "explain_prototypes",
    "fraction_on_mask",
    "high_activation_box",
    "high_activation_boxes",
    "l1_wrong_class",
    "last_layer_init",
    "load_checkpoint",
    "log_similarity",
    "nearest_images",
    "peak_distance",
    "prototype_class_identity",
    "prototype_purity",
    "prototype_gallery",
    "protopnet_loss",
    "prune_prototypes",
    "push",
    "receptive_field",
    "save_checkpoint",
    "select_prototypes",
    "separation_cost",
    "squared_distances",
    "stage_optimizer",
    "train_last_layer",
    "train_plain_cnn",
    "train_protopnet",
]
