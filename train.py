"""Train balanced-align: `python train.py`, or sweep: `python train.py -m loss.lambda=0,1,3,5,7`."""

import hydra
from omegaconf import DictConfig

from balanced_align.config_store import register_configs
from balanced_align.sweeps import register_resolvers

register_resolvers()  # ${ba.sweep_subdir:…} names multirun job dirs (conf/hydra/default.yaml)
register_configs()  # train_schema: the typed base of conf/train.yaml


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from balanced_align.training import run

    return run(cfg)


if __name__ == "__main__":
    main()
