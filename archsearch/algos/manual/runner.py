"""Manual: evaluate a given architecture, a genotype (DARTS_V1, DARTS_V2 or the paper's notation) or a
ModelDesc YAML file. "Search" just writes it as search/final_model_desc.yaml so the rest of the pipeline
(and --search-only / --eval-only) is the same as for every other algorithm."""

from __future__ import annotations

from pathlib import Path

from archsearch.common.errors import ConfigError
from archsearch.nas.context import RunContext
from archsearch.nas.exp_runner import RUNNERS, ExperimentRunner
from archsearch.nas.genotype import genotype_to_templates, parse_genotype
from archsearch.nas.model_desc import ModelDesc
from archsearch.nas.model_desc_builder import ModelDescBuilder
from archsearch.nas.searcher import Searcher, SearchResult, SearchSetup, save_final_desc


def given_desc(conf_search, builder: ModelDescBuilder) -> ModelDesc:
    conf_manual = conf_search["manual"]
    genotype, desc_file = conf_manual["genotype"], conf_manual["desc_file"]
    if bool(genotype) == bool(desc_file):
        raise ConfigError(
            "manual needs exactly one of --nas.search.manual.genotype NAME_OR_TEXT "
            "or --nas.search.manual.desc_file PATH"
        )
    if desc_file:
        return ModelDesc.load(Path(desc_file))
    g = parse_genotype(str(genotype))
    return builder.with_templates(genotype_to_templates(g)).build(meta={"algo": "manual", "genotype": str(g)})


class ManualSearcher(Searcher):
    def search(self, ctx: RunContext, setup: SearchSetup) -> SearchResult:
        conf_search = setup.conf
        builder = setup.builder
        desc = given_desc(conf_search, builder)
        return SearchResult(save_final_desc(ctx, desc, {}), {})


@RUNNERS.register("manual")
class ManualRunner(ExperimentRunner):
    name = "manual"
    summary = "evaluate a given genotype (DARTS_V1, DARTS_V2, paper notation) or desc file"

    def searcher(self) -> Searcher:
        return ManualSearcher()

    def search_model(self) -> None:
        return None

    def example_final_arch(self, folder: Path) -> Path:
        desc = given_desc(self.conf_search, self.model_desc_builder(self.conf_search["model_desc"]))
        return desc.save(folder / "final_model_desc.yaml")
