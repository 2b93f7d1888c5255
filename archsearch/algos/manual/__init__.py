from archsearch.algos.manual.strategy import Manual

__all__ = ["Manual"]
