"""Fine-tuning on what ``dataprep tokenize`` wrote. Importing this package imports torch: the CLI does it lazily."""

from dataprep.train.trainer import TrainOptions, TrainResult, train

__all__ = ["TrainOptions", "TrainResult", "train"]
