"""Packaging that pyproject.toml cannot express: the configs live at the top of the repository (confs/, as in
Archai) and ship inside the wheel as the package data `archsearch/confs/`, so an installed archsearch runs
anywhere (archsearch.config.confs_dir finds either). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["archsearch", "archsearch.*"]), "archsearch.confs"],
    package_dir={"archsearch.confs": "confs"},
    package_data={"archsearch": ["report/templates/*"], "archsearch.confs": ["*.yaml", "**/*.yaml"]},
)
