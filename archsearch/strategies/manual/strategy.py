"""Manual: evaluate a given architecture on any space. "Search" writes it as the space's final file, so
the rest of the pipeline (and --search-only / --eval-only) is the same as for every other strategy.

Exactly one of: `nas.search.manual.genotype`, the architecture in the space's encoding (on DARTS cells a
genotype name (DARTS_V1, DARTS_V2, NASNet, AmoebaNet) or the paper's notation; on NAS-Bench-201 a cell string);
`nas.search.manual.index`, its benchmark index (NAS-Bench-201: 0..15624); `nas.search.manual.desc_file`,
a final architecture file of the space (a ModelDesc YAML for cell spaces).
"""

from __future__ import annotations

from pathlib import Path

from archsearch.common.errors import ConfigError
from archsearch.config.schema import Int, Str, register_section
from archsearch.search.space import Arch
from archsearch.search.strategy import SearchOutcome, Strategy, register_strategy

register_section("nas.search.manual", {"index": Int(null=True, ge=0)})

KEYS = ("genotype", "index", "desc_file")


@register_strategy
class Manual(Strategy):
    name = "manual"
    summary = "evaluate a given architecture: a genotype (DARTS_V1/V2, NASNet, AmoebaNet, notation), NB201 cell, file"
    requires = frozenset()  # any space can read its own architectures

    def given_arch(self) -> Arch:
        conf_manual = self.conf["manual"]
        given = [key for key in KEYS if conf_manual.get(key) is not None]
        if len(given) != 1:
            raise ConfigError(
                "manual needs exactly one of --nas.search.manual.genotype NAME_OR_TEXT, "
                f"--nas.search.manual.index N or --nas.search.manual.desc_file PATH (got {', '.join(given) or 'none'})"
            )
        key = given[0]
        if key == "desc_file":
            return self.space.load_arch(Path(conf_manual[key]))
        return self.space.from_json(conf_manual[key], f"nas.search.manual.{key}")

    def search(self) -> SearchOutcome:
        return SearchOutcome(self.given_arch())

    def example_arch(self) -> Arch:
        return self.given_arch()


register_section(
    "nas.search.manual",
    {"genotype": Str(null=True, pattern=r"(?s).*\S.*", allowed="a genotype"),
     "desc_file": Str(null=True, pattern=r".+", allowed="a ModelDesc YAML file")},
)  # fmt: skip
