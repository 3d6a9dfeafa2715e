"""Conditions and controls: what a user may ask a model for, and how the sampler may be steered.

A *condition* enters the graphs; each kind is a plug-in module of this package behind one protocol
(``kinds.py``): ``categorical``, ``continuous``, ``vector`` and ``text`` (a prompt, encoded by the
bundle's encoder graph in the encode stage). A *control* steers the sampler on the host
(``controls.py``). Both are described in the manifest and validated on every request, so a bad
value is a one-line error before any graph runs. Adding a kind: one module here, imported below.
"""
from genctl.conditions.categorical import Categorical
from genctl.conditions.continuous import Continuous
from genctl.conditions.controls import Control, resolve_controls
from genctl.conditions.kinds import KINDS, ConditionKind, condition_from_json, condition_to_json
from genctl.conditions.schema import ConditionRows, ConditionSchema, parse_cond_args, read_cond_files
from genctl.conditions.text import EncodedPrompt, PromptCache, Text
from genctl.conditions.vector import Vector

Condition = ConditionKind  # the type of any condition declaration

__all__ = ["KINDS", "Categorical", "Condition", "ConditionKind", "ConditionRows", "ConditionSchema", "Continuous", "Control",
           "EncodedPrompt", "PromptCache", "Text", "Vector", "condition_from_json", "condition_to_json", "parse_cond_args",
           "read_cond_files", "resolve_controls"]
