"""Choosing the executor a trial loop runs on: `common.executor` (local | ray), with `common.ray`.

Its own module, above both executors: the trial loop defines the Executor protocol and the local executor,
the Ray executor implements the protocol, and only this chooser knows them both.
"""

from __future__ import annotations

from typing import Any

from archsearch.common import distributed
from archsearch.common.errors import ConfigError, UserError
from archsearch.search.trial_loop import Executor, LocalExecutor

EXECUTORS = ("local", "ray")


def make_executor(conf_common: Any, log: Any = print) -> Executor:
    """The executor `common.executor` names, configured by `common.ray` (confs/common.yaml)."""
    name = conf_common["executor"]
    if name == "local":
        return LocalExecutor()
    if name != "ray":
        raise ConfigError(f"common.executor {name!r} is not one of {', '.join(EXECUTORS)}")
    if distributed.launched_world_size() > 1:
        # every rank would start its own Ray search over the same trials
        raise ConfigError(
            f"--common.executor ray cannot run under torchrun ({distributed.launched_world_size()} processes): "
            "launch it with plain python (Ray places the trials), or keep --common.executor local to train "
            "each trial with all ranks"
        )
    try:
        import ray  # noqa: F401 - the optional extra
    except ImportError:
        raise UserError(
            "--common.executor ray needs Ray, which is not installed: pip install 'archsearch[ray]' "
            "(or use --common.executor local)"
        ) from None
    from archsearch.search.ray_executor import RayExecutor

    return RayExecutor.from_conf(conf_common["ray"], conf_common["num_threads"], log)
