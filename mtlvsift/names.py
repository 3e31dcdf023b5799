"""The names both programs share: methods, protocols, samplings, batchings, the defaults of a run.

The trainer writes these into every run record, and the report, the grid and the record's reader
check what they read against them; so they live here, below all three (no imports at all).
"""

METHODS = ("single", "stilts", "mtl", "mtl_all")
# The script that makes a run of each method.
SCRIPTS = {"single": "train_stilts.py", "stilts": "train_stilts.py", "mtl": "train_mtl.py",
           "mtl_all": "train_mtl_all.py"}

PREDICT_SPLITS = ("test", "dev")  # what scripts/predict.py --split predicts

# ``standard``: this project's training protocol; ``original``: the authors' code (docs/fidelity.md).
PROTOCOLS = ("standard", "original")
DEFAULT_PROTOCOL = "standard"
SAMPLINGS = ("dynamic", "size", "uniform", "temperature")
# How long a standard pairwise MTL epoch is: the rows of all tasks, or what shows the target once.
MTL_EPOCHS = ("sum", "target")
BATCHINGS = ("heterogeneous", "homogeneous")
DYNAMIC_RULES = ("softmax", "normalized")
# Where a run selects its best checkpoint: dev (the paper's), or a part held out of training.
SELECTION_SPLITS = ("dev", "holdout")
# accelerate's trackers (``accelerate.utils.LoggerType``), named here so that the options can be
# declared without importing accelerate; ``train/trackers.py`` checks the one asked for is installed.
TRACKERS = ("aim", "tensorboard", "wandb", "trackio", "comet_ml", "mlflow", "clearml", "dvclive",
            "swanlab")

MAX_SEED = 2**32 - 1  # numpy's legacy seeding (used by accelerate's set_seed) takes 32 bits
MAX_COUNT = 10**9  # epochs, batch sizes, examples, steps: far beyond any real run

DEFAULT_MODEL = "distilroberta-base"  # the paper's encoder
DEFAULT_OUTPUTS = "outputs"
DEFAULT_SEEDS = (0, 1, 2, 3, 4)  # five seeds, as many as the paper's
# The seeds of the authors' scripts (bin/glue/*); any five seeds give the same protocol.
AUTHORS_SEEDS = (42, 544460, 801760, 428404, 257803)
