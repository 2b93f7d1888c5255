"""archsearch: neural architecture search for PyTorch."""

__version__ = "0.1.0"


def load_model(path):  # noqa: ANN001, ANN201 - thin lazy re-export, see archsearch.nas.load
    """Rebuild a trained network from an eval/model.pt file (imports torch on first use)."""
    from archsearch.nas.load import load_model as _load_model

    return _load_model(path)
