"""ProtoPNet against a plain CNN with the same backbone, on synthetic shapes and digits.

Chen et al. (2019) report that the prototype layer costs little accuracy compared with the same
backbone trained as a plain classifier, while every decision becomes "this looks like that". For
each data set this runs the ProtoPNet trainer (warm-up, joint, push, last-layer optimisation; the
plain CNN is trained the same way), the paper's pruning step and last-layer optimisation again,
records accuracy before and after push, after last-layer optimisation (from its per-stage log) and
after pruning, and keeps the prototype gallery and the "this looks like that" figures of several
test images. Where object masks are known (synthetic shapes) it reports prototype purity next to
accuracy (:func:`xaijax.protopnet.prototype_purity`): the fraction of prototypes whose
high-activation region lies mostly on the object, and the fraction of their nearest training
images that share their class.

    xaijax experiment protopnet [--quick] [--datasets shapes,digits] [--out runs/protopnet]

References:
    Chen et al., "This Looks Like That: Deep Learning for Interpretable Image Recognition",
    NeurIPS 2019.
"""

from __future__ import annotations

import argparse
import json
import os

from xaijax.cli.protopnet import protopnet
from xaijax.cli.runs import save_results
from xaijax.cli.settings import ProtoPNetSettings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="ProtoPNet vs a plain CNN on shapes and digits")
    parser.add_argument("--quick", action="store_true", help="small, fast settings (CPU minutes)")
    parser.add_argument("--datasets", default="shapes,digits")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--n", type=int, default=None, help="synthetic images (shapes)")
    parser.add_argument("--explain", type=int, default=3, help="test images to explain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-prune", dest="prune", action="store_false", help="skip pruning")
    parser.add_argument("--out", default=os.path.join("runs", "protopnet"))
    args = parser.parse_args(argv)

    runs = {}
    for dataset in args.datasets.split(","):
        out = os.path.join(args.out, dataset)
        settings = ProtoPNetSettings(
            dataset=dataset,
            out=out,
            quick=args.quick,
            epochs=args.epochs or None,
            n=args.n if args.n and dataset == "shapes" else ProtoPNetSettings.n,
            seed=args.seed,
            explain=args.explain,
            quiet=True,
            prune=args.prune,
        )
        result = protopnet(settings)
        stages = _stage_accuracies(os.path.join(out, "metrics.jsonl"))
        if "protopnet_test_accuracy_before_pruning" in result:
            stages["prune+last"] = result["protopnet_test_accuracy"]
        purity = {k: v for k, v in result.items() if k.startswith(("purity", "pruned"))}
        runs[dataset] = {
            "protopnet_test_accuracy": result["protopnet_test_accuracy"],
            "plain_cnn_test_accuracy": result["plain_cnn_test_accuracy"],
            **purity,
            "accuracy_by_stage": stages,
            "figures": sorted(f for f in os.listdir(out) if f.endswith(".png")),
            "run_folder": out,
        }
        on_object = ""
        if "purity" in result:
            p = result["purity"]
            on_object = (
                f"; of {p['num_prototypes']} prototypes, peaked at the object "
                f"{p['fraction_peak_at_object']:.2f} (a random position "
                f"{p['chance_peak_at_object']:.2f}), top 5% mostly on it "
                f"{p['fraction_on_object']:.2f}, nearest images in class {p['class_purity']:.2f}"
            )
        print(
            f"{dataset}: ProtoPNet {result['protopnet_test_accuracy']:.3f}, "
            f"plain CNN {result['plain_cnn_test_accuracy']:.3f}{on_object}"
        )
    path = save_results(
        args.out,
        {"experiment": "protopnet", "seed": args.seed, "settings": vars(args), "datasets": runs},
    )
    print(f"wrote {path}")
    return 0


def _stage_accuracies(path):
    """The last logged test accuracy of each stage (warm-up, joint, push, last layer), in order."""
    stages = {}
    if not os.path.exists(path):
        return stages
    with open(path) as fh:
        for line in fh:
            record = json.loads(line)
            stage = record.get("stage")
            if stage is not None and "test_accuracy" in record:
                stages[stage] = record["test_accuracy"]
    return stages


if __name__ == "__main__":
    raise SystemExit(main())
