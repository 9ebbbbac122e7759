"""A session's two selectors, its agent and its model, as ACP shows and sets them.

- The agent is an ACP *mode* (``modes``: stable in v1, and what older clients
  show) and the config option ``mode`` (category ``mode``). Config options
  supersede modes in v1; both are sent, so either kind of client gets a selector.
- The model is the config option ``model`` (category ``model``), offered when the
  runtime lists its models (``GET /v1/models``; an older server does not): the
  value ``default`` (the runtime's ``switch_model`` with ``null``: the agent's
  model, else the server's) and every name the runtime's configuration names. A
  model another client switched the session to is offered too, so the selector
  can show it. ACP's unstable ``session/set_model`` is not offered.

:class:`SessionOptions` is what one session's selectors show: the runtime's
choices and the session's agent and model as the events followed so far said
(``agent.switched``, ``model.switched``). :meth:`SessionOptions.feed` turns those
events into ``current_mode_update`` and ``config_option_update``;
:meth:`SessionOptions.chosen_model` reads what a client sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import attrs
from attrs import frozen

from sessions import JSON, JSONObject

from ._jsonrpc import INVALID_PARAMS, RpcError
from ._link import AgentInfo, ModelChoices

MODE_OPTION: Final = "mode"
MODEL_OPTION: Final = "model"
# The model option's value that goes back to the defaults (switch_model with null).
# [models.default] already names the catalogue's fallback, so no model is called so.
DEFAULT_MODEL: Final = "default"


def mode_state(agents: Sequence[AgentInfo], current: str) -> JSONObject:
    """ACP's ``modes`` of a session: every agent, and the session's current one."""
    modes: list[JSON] = [
        {"id": agent.name, "name": agent.name.capitalize(), "description": agent.description}
        for agent in agents
    ]
    return {"currentModeId": current, "availableModes": modes}


@frozen
class Choices:
    """What a session can be switched to: the runtime's agents and (``None``: not
    listed) its models. The same for every session of a connection."""

    agents: tuple[AgentInfo, ...]
    models: ModelChoices | None = None


@attrs.define
class SessionOptions:
    """One session's selectors (see the module docstring): *agent* and *model*
    (``None``: the defaults) as its log last said."""

    choices: Choices
    agent: str
    model: str | None = None

    def answer(self) -> JSONObject:
        """``modes`` and ``configOptions``, as a new, load, resume or fork answers them."""
        return {
            "modes": mode_state(self.choices.agents, self.agent),
            "configOptions": self.config_options(),
        }

    def config_options(self) -> list[JSON]:
        """ACP's ``configOptions``: the agent, then (when listed) the model."""
        agents: list[JSON] = [
            {"value": agent.name, "name": agent.name.capitalize(), "description": agent.description}
            for agent in self.choices.agents
        ]
        options: list[JSON] = [
            {
                "id": MODE_OPTION,
                "name": "Agent",
                "description": "Which agent works on the session",
                "category": "mode",
                "type": "select",
                "currentValue": self.agent,
                "options": agents,
            }
        ]
        models = self.choices.models
        if models is not None:
            values: list[JSON] = [
                {
                    "value": DEFAULT_MODEL,
                    "name": "Default",
                    "description": f"The agent's own model, else the server's ({models.default})",
                }
            ]
            values += [{"value": name, "name": name} for name in self._model_names()]
            options.append(
                {
                    "id": MODEL_OPTION,
                    "name": "Model",
                    "description": "Which model the session's calls use",
                    "category": "model",
                    "type": "select",
                    "currentValue": DEFAULT_MODEL if self.model is None else self.model,
                    "options": values,
                }
            )
        return options

    def _model_names(self) -> list[str]:
        assert self.choices.models is not None
        names = [n for n in self.choices.models.names if n != DEFAULT_MODEL]
        if self.model is not None and self.model not in names:
            names.append(self.model)  # switched to by another client: shown as it is
        return names

    def feed(self, event: Mapping[str, JSON]) -> list[JSONObject]:
        """The updates a switch of agent or model makes (none for other events)."""
        kind = event.get("type")
        if kind == "agent.switched" and isinstance(to := event.get("to"), str):
            self.agent = to
            return [{"sessionUpdate": "current_mode_update", "currentModeId": to}, self._update()]
        if kind == "model.switched":
            model = event.get("to")
            self.model = model if isinstance(model, str) else None
            return [self._update()] if self.choices.models is not None else []
        return []

    def _update(self) -> JSONObject:
        return {"sessionUpdate": "config_option_update", "configOptions": self.config_options()}

    def chosen_model(self, value: JSON) -> str | None:
        """The model ``session/set_config_option`` sets *value* to (``None``: the
        defaults).

        Raises:
            RpcError: invalid params: no model option, or *value* is not one it offers.
        """
        if self.choices.models is None:
            raise RpcError(INVALID_PARAMS, f"unknown config option {MODEL_OPTION!r}")
        if value == DEFAULT_MODEL:
            return None
        if not isinstance(value, str) or value not in self._model_names():
            offered = ", ".join([DEFAULT_MODEL, *self._model_names()])
            raise RpcError(INVALID_PARAMS, f'"value" of {MODEL_OPTION!r} must be one of {offered}')
        return value
