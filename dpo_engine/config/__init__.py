"""The engine's typed configurations and everything derived from them, importable without torch.

:class:`TrainConfig` (a DPO run) and :class:`GenerateConfig` (sampling) declare each field's help, and its
bounds or choices, in ``metadata``; :func:`config_fields` lists them as :class:`FieldSpec` rows for forms and API
schemas, :func:`add_config_arguments` makes ``argparse`` options of them, and ``validate()`` (through
:func:`check_values`) checks them with one rule. :func:`resolve_schedule` fills the "auto" schedule fields
against the number of training pairs.
"""

from dpo_engine.config.arguments import add_config_arguments, config_from_args, config_to_args
from dpo_engine.config.fields import ConfigError, FieldSpec, check_config, check_values, config_fields
from dpo_engine.config.generation import MAX_NEW_TOKENS_MAX, N_MAX, TEMPERATURE_MAX, GenerateConfig, GenerateDtype
from dpo_engine.config.schedule import (
    PAPER_MIN_PAIRS,
    SCHEDULE_FIELDS,
    Schedule,
    resolve_eval_every,
    resolve_schedule,
)
from dpo_engine.config.training import (
    DEFAULT_MODEL,
    LOSS_NAMES,
    SEED_MAX,
    DtypeName,
    OptimizerName,
    ReferenceMode,
    TrainConfig,
)

__all__ = [
    "DEFAULT_MODEL",
    "LOSS_NAMES",
    "MAX_NEW_TOKENS_MAX",
    "N_MAX",
    "PAPER_MIN_PAIRS",
    "SCHEDULE_FIELDS",
    "SEED_MAX",
    "TEMPERATURE_MAX",
    "ConfigError",
    "DtypeName",
    "FieldSpec",
    "GenerateConfig",
    "GenerateDtype",
    "OptimizerName",
    "ReferenceMode",
    "Schedule",
    "TrainConfig",
    "add_config_arguments",
    "check_config",
    "check_values",
    "config_fields",
    "config_from_args",
    "config_to_args",
    "resolve_eval_every",
    "resolve_schedule",
]
