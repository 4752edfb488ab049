"""The parts of a training recipe, each a table the config validates against: models (timm + offline weights),
the one-epoch engine, losses, optimizers and schedulers, mixing (mixup/cutmix) and trackers."""
