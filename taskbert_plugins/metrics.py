"""Built-in metrics over flat lists of gold and predicted labels or values.

scikit-learn computes the classification metrics and scipy the correlations: both are
well tested and their definitions are the ones papers report.
"""

from taskbert import hookimpl


def accuracy(golds, preds):
    """Share of predictions equal to the gold label."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(golds, preds))


def macro_f1(golds, preds):
    """F1 averaged over labels with equal weight (labels seen in gold or predictions)."""
    from sklearn.metrics import f1_score

    return float(f1_score(golds, preds, average="macro", zero_division=0))


def micro_f1(golds, preds):
    """F1 over all decisions pooled."""
    from sklearn.metrics import f1_score

    return float(f1_score(golds, preds, average="micro", zero_division=0))


def weighted_f1(golds, preds):
    """F1 averaged over labels weighted by their gold counts."""
    from sklearn.metrics import f1_score

    return float(f1_score(golds, preds, average="weighted", zero_division=0))


def matthews(golds, preds):
    """Matthews correlation coefficient (CoLA's metric)."""
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(golds, preds))


def pearson(golds, preds):
    """Pearson correlation of real-valued predictions."""
    from scipy.stats import pearsonr

    return float(pearsonr(golds, preds)[0])


def spearman(golds, preds):
    """Spearman rank correlation of real-valued predictions."""
    from scipy.stats import spearmanr

    return float(spearmanr(golds, preds)[0])


def mse(golds, preds):
    """Mean squared error."""
    return float(sum((g - p) ** 2 for g, p in zip(golds, preds)) / max(1, len(golds)))


@hookimpl
def taskbert_register_metrics(register):
    register("accuracy", accuracy)
    register("macro_f1", macro_f1)
    register("micro_f1", micro_f1)
    register("weighted_f1", weighted_f1)
    register("matthews", matthews)
    register("pearson", pearson)
    register("spearman", spearman)
    register("mse", mse)
