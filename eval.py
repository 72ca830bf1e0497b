"""Evaluate a checkpoint on real benchmarks: ``python eval.py ckpt_path=… benchmark=lfw …``.

See ``conf/eval.yaml`` and ``conf/benchmark/`` for the options; several benchmarks at once
with ``benchmark=[lfw,megaface]``.
"""

import hydra
from omegaconf import DictConfig

from balanced_align.sweeps import register_resolvers

register_resolvers()  # ${ba.sweep_subdir:…} names multirun job dirs (conf/hydra/default.yaml)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from balanced_align.evaluating import run

    run(cfg)


if __name__ == "__main__":
    main()
