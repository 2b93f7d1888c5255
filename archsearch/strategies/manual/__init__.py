from archsearch.strategies.manual.strategy import Manual

__all__ = ["Manual"]
