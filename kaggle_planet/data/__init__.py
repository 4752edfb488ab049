"""From a data folder to images and targets: the competitions table (layouts, targets, submission formats),
folds, the dataset and loader, augmentation presets, the image cache and demo-data synthesis. Only ``loader``
and ``augment`` import torch / albumentations."""
