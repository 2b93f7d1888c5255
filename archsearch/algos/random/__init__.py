from archsearch.algos.random.runner import RandomRunner, RandomSearcher

__all__ = ["RandomRunner", "RandomSearcher"]
