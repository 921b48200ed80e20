"""Composing the project's configs with Hydra: the composed config, its plain-dict views, and a cache
of composed configs and validated plans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from nnexp.engine.data import Dataset
from nnexp.engine.model import MLPSpec
from nnexp.errors import ConfigError, choice
from nnexp.paths import CONF_DIR, group_options
from nnexp.plan import Plan, build_plan


def without_group(overrides: Sequence[str], group: str) -> list[str]:
    """The overrides that set nothing under `group` (`group=...`, `group.x=...`, `+group.x=...` are dropped)."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] != group]


MAX_OVERRIDE = 8_000  # characters: a list of 1,000 seeds takes ~4,000


def compose(overrides: Sequence[str] = (), config_name: str = "config", hydra_node: bool = False) -> DictConfig:
    """Compose the project's config with Hydra's compose API (no output directory, no logging).

    `hydra_node` keeps Hydra's own node (`cfg.hydra.runtime.choices` names each group's option)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    for o in overrides:
        if len(o) > MAX_OVERRIDE:  # Hydra's override parser takes ~20 s on 50,000 characters
            key = o.split("=", 1)[0]
            raise ConfigError(key, f"<{len(o):,} characters>", f"an override may be at most {MAX_OVERRIDE:,} "
                              "characters long; put a longer value in a config file under conf/")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=hydra_node)


def mapping(node: Any) -> dict[str, Any]:
    """A config node (or a plain mapping) as a plain dict with string keys, interpolations resolved."""
    if node is None:
        return {}
    raw: Any = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return {str(k): v for k, v in dict(raw).items()}


class ConfigCache:
    """Configs composed from the base overrides plus some more, and validated plans, with each config
    composed (~50 ms with Hydra) and each dataset loaded only once."""

    def __init__(self, base_overrides: Sequence[str] = ()) -> None:
        self.base = list(base_overrides)
        self._composed: dict[tuple[str, ...], DictConfig] = {}
        self._data: dict[str, Dataset] = {}
        self._specs: dict[str, MLPSpec] = {}

    def composed(self, extra: Sequence[str] = ()) -> DictConfig:
        key = tuple(extra)
        if key not in self._composed:
            self._composed[key] = compose([*self.base, *key])
        return self._composed[key]

    def plan(self, cfg: DictConfig) -> Plan:
        """A validated plan of `cfg` (one replica, seed cfg.seed)."""
        key = OmegaConf.to_yaml(cfg.data, resolve=True)
        data = self._data.get(key)
        model = OmegaConf.to_yaml(cfg.model, resolve=True) + (f"inputs: {data.n_features}" if data else "")
        plan = build_plan(cfg, data=data, spec=self._specs.get(model) if data else None)
        self._data[key] = plan.data
        self._specs[OmegaConf.to_yaml(cfg.model, resolve=True) + f"inputs: {plan.data.n_features}"] = plan.spec
        return plan


HARNESS_KEYS = ("tracking", "hydra", "sweep", "ablation")  # how to run and record, not what is trained


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as dotted keys -> strings (`optimizer.lr`, `model.sizes`), Hydra's
    the harness settings (tracking, sweep, ablation) left out."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, (DictConfig, dict)):
            for k, v in node.items():
                if k == "_target_" or (not prefix and k in HARNESS_KEYS):
                    continue
                walk(v, f"{prefix}{k!s}.")
        else:
            value = OmegaConf.to_container(node) if isinstance(node, ListConfig) else node
            out[prefix[:-1]] = str(value)

    walk(cfg, "")
    return out


def run_params(cfg: DictConfig, plan: Plan) -> dict[str, str]:
    """A run's params: every config value flattened, and the layer widths actually trained
    (`model.sizes`: the input width comes from the data)."""
    return {**flat_params(cfg), "model.sizes": str(list(plan.spec.sizes))}


def compose_checked(overrides: Sequence[str] = ()) -> DictConfig:
    """`compose`, with every mistake in the overrides raised as a ConfigError in one paragraph: a
    misspelt group option or key gets its close matches, a malformed override the parser's complaint."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    _check_group_options(overrides)
    try:
        return compose(overrides)
    except OverrideParseException as e:
        raise ConfigError("override", " ".join(overrides), f"could not parse the override: {' '.join(str(e).split())}"
                          ". Overrides look like key=value, e.g. optimizer.lr=0.05") from None
    except ConfigCompositionException as e:
        raise ConfigError("override", " ".join(overrides), _explain_composition_error(e, overrides)) from None


def _explain_composition_error(e: Exception, args: Sequence[str]) -> str:
    """An unknown key becomes 'no such setting', with the settings that do exist beside it."""
    import difflib
    import re

    text = " ".join(str(e).split())
    m = re.search(r"Could not override '([^']+)'", text)
    if not m:
        cause = " ".join(str(e.__cause__).split()) if e.__cause__ else ""
        return f"{text}: {cause}" if cause and cause not in text else text
    key = m.group(1)
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(compose([a for a in args if not a.startswith(key + "=")]), parent) if parent else None
    if not isinstance(node, DictConfig):
        return f"{key}: no such setting ({text})"
    options = sorted(str(k) for k in node.keys())
    close = difflib.get_close_matches(leaf, options, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    extra = " (a model states its hidden layers: the input width comes from the data)" if key == "model.sizes" else ""
    return f"{key}: no such setting; settings of {parent}: {', '.join(options)}.{hint}{extra}"


def _check_group_options(args: Sequence[str]) -> None:
    for arg in args:
        if "=" not in arg or arg.startswith(("hydra", "+", "~", "-")):
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+")
        if "." in key or "/" in key or not (CONF_DIR / key).is_dir():
            continue
        if value in ("null", "") and key == "experiment":
            continue
        try:
            choice(key, value, group_options(key))
        except ConfigError as e:
            raise ConfigError(e.field, e.value, f"{e.allowed} (config group {key!r} in conf/{key}/)", e.hint) from None


def with_default_group(args: Sequence[str], group: str, default: str) -> list[str]:
    """`group=default` first unless the overrides already choose an option of `group`."""
    chosen = any(a.lstrip("+").split("=", 1)[0] == group for a in args)
    return list(args) if chosen else [f"{group}={default}", *args]
