from archsearch.algos.manual.runner import ManualRunner

__all__ = ["ManualRunner"]
