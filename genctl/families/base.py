"""The Family plug-in contract.

A family knows how to build and train one kind of conditional generative model and which graphs to
export. Everything downstream (bundle, backends, samplers, bench, eval) reads only the manifest
and the GraphSpecs, so any ``nn.Module`` with the family's call signature can be exported and run.

Adding a family = one file in ``genctl/families/`` + one line in ``genctl/families/__init__.py``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from genctl.conditions import Categorical, ConditionSchema
from genctl.spec import GraphSpec


@dataclass
class GraphDef:
    """One graph to export: the module to trace, example inputs (by name, in call order), its spec."""

    module: torch.nn.Module
    example: dict[str, torch.Tensor]
    spec: GraphSpec
    dim_max: dict[str, int] = dataclasses.field(default_factory=dict)  # export bound per symbolic dim (e.g. seq <= context)


class Family:
    """Base class; subclasses set the class attributes and implement the four methods."""

    name: ClassVar[str]
    sampler: ClassVar[str]  # "oneshot" | "diffusion" | "autoregressive"
    data_kind: ClassVar[str | tuple[str, ...]] = "image"  # which datasets fit: "image", "text", "bits" (ntm) or a tuple of them
    label_conditioned: ClassVar[bool] = True  # conditioned on the dataset's classes: training needs two or more
    Config: ClassVar[type]  # a dataclass of hyper-parameters with commented defaults
    default_epochs: ClassVar[dict[str, int]] = {}  # dataset name -> epochs that reach good samples

    # --- to implement -------------------------------------------------------------------------
    def build_model(self, config: dict) -> torch.nn.Module:
        """The untrained module for a checkpoint config (``config["hparams"]``, ``config["dataset"]``)."""
        raise NotImplementedError

    def train(self, model: torch.nn.Module, dataset: Any, config: dict, epochs: int) -> dict:
        """Train ``model`` in place on ``dataset``; return metrics to store in the config."""
        raise NotImplementedError

    def graphs(self, model: torch.nn.Module, config: dict) -> dict[str, GraphDef]:
        """The graphs to export, keyed by graph name."""
        raise NotImplementedError

    def sampler_section(self, config: dict) -> dict:
        """The manifest's ``sampler``: kind, which graph(s) it calls, default controls."""
        raise NotImplementedError

    # --- shared defaults ----------------------------------------------------------------------
    def conditions(self, config: dict) -> ConditionSchema:
        names = tuple(config["dataset"]["label_names"])
        return ConditionSchema([Categorical(name=self.condition_name, names=names)])

    condition_name: ClassVar[str] = "label"

    def source_files(self, config: dict) -> dict[str, bytes]:
        """Files beside the weights in the bundle's ``source/`` (a tokenizer), hashed in the manifest."""
        return {}

    def info(self, config: dict) -> dict:
        """Family facts for the manifest's ``info`` (output kind/shape, vocab ...)."""
        return {"output": {"kind": "image", "shape": config["dataset"]["shape"], "range": [-1.0, 1.0]}}

    def make_config(self, dataset_info: dict, overrides: dict | None = None) -> dict:
        hparams = dataclasses.asdict(self.Config(**(overrides or {})))
        return {"family": self.name, "dataset": dataset_info, "hparams": hparams}
