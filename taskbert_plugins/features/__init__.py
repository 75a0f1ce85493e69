"""feature_classification and feature_tagging: a frozen encoder whose chosen layers feed a
light head, with the features cached on disk.

The package is the plugin: its hooks are here, its code in the modules beside this file."""

from taskbert import hookimpl

from .extract import add_extract_command, extract_features  # noqa: F401
from .tagging import FeatureTagging
from .task import (  # noqa: F401
    STATS_FILE,
    FeatureClassification,
    FeatureOptions,
    FeatureTask,
    store_stats,
)


@hookimpl
def taskbert_register_tasks(register):
    """``feature_classification`` and ``feature_tagging``."""
    register(FeatureClassification)
    register(FeatureTagging)


@hookimpl
def taskbert_register_commands(cli):
    """``taskbert extract SPEC``."""
    add_extract_command(cli)
