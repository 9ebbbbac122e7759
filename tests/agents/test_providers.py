"""The model-provider seam: the registry, neutral messages, and provider data.

Provider data is what a provider attaches to its answer and needs back on later
calls; these tests follow it through the runner, the ``message`` event, the
store, the fold and the next request, also across a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest

from agents import ConfigError, ModelError, ScriptedModel
from agents._core._events import AssistantMessage, decode_event, encode_event
from agents.model import (
    PROVIDERS,
    ChatMessage,
    FinishDelta,
    ModelDelta,
    ModelRequest,
    OpenAIClient,
    ProviderDataDelta,
    ProviderSettings,
    TextDelta,
    TextPart,
    open_provider,
)
from agents.testing import SessionState
from sessions import JSON, Session, open_memory_store

from .harness import Harness, open_runtime

# -- the registry --------------------------------------------------------------


def test_the_registry_names_the_built_in_providers() -> None:
    assert list(PROVIDERS) == ["scripted", "openai"]


async def test_opens_the_scripted_model_with_its_pace() -> None:
    async with open_provider(ProviderSettings(name="scripted", pace=0.25)) as client:
        assert isinstance(client, ScriptedModel)
        assert client.name == "scripted"
        assert client.pace == 0.25


async def test_opens_the_openai_client_with_every_setting() -> None:
    settings = ProviderSettings(
        name="openai",
        url="http://127.0.0.1:9/v1",
        model="m1",
        api_key="sk-x",
        connect_timeout=1.5,
        first_token_timeout=2.5,
        idle_timeout=3.5,
        retries=1,
        backoff_base=0.125,
    )
    async with open_provider(settings) as client:
        assert isinstance(client, OpenAIClient)
        assert client.name == "openai"
        assert str(client.url) == "http://127.0.0.1:9/v1/chat/completions"
        assert client.model == "m1"
        patience = (
            client.connect_timeout,
            client.first_token_timeout,
            client.idle_timeout,
            client.max_retries,
            client.backoff_base,
        )
        assert patience == (1.5, 2.5, 3.5, 1, 0.125)


async def test_an_unknown_provider_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        async with open_provider(ProviderSettings(name="anthropic")):
            pytest.fail("opened an unknown provider")
    assert str(caught.value) == "unknown model provider 'anthropic'; providers: scripted, openai"


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (ProviderSettings(name="scripted", pace=-1.0), "model provider 'scripted': pace"),
        (ProviderSettings(name="openai", url="ftp://x/v1"), "model provider 'openai': base_url"),
        (
            ProviderSettings(name="openai", idle_timeout=0),
            "model provider 'openai': idle_timeout",
        ),
    ],
)
async def test_settings_a_provider_refuses_are_a_config_error(
    settings: ProviderSettings, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        async with open_provider(settings):
            pytest.fail("opened a provider with bad settings")


async def test_a_value_error_of_the_callers_block_is_not_taken_for_bad_settings() -> None:
    with pytest.raises(ValueError, match="the caller's own"):
        async with open_provider(ProviderSettings()):
            raise ValueError("the caller's own")


def test_the_settings_keep_the_api_key_out_of_repr() -> None:
    assert "sk-secret" not in repr(ProviderSettings(api_key="sk-secret"))


# -- neutral messages ----------------------------------------------------------


def test_a_message_of_parts_has_their_text_as_content() -> None:
    message = ChatMessage.of_parts("user", [TextPart("hello "), TextPart("world")])
    assert message.content == "hello world"
    assert message.parts == (TextPart("hello "), TextPart("world"))
    assert ChatMessage.of_parts("user", []).content is None


def test_parts_and_content_cannot_disagree() -> None:
    with pytest.raises(ValueError, match="their text as its content"):
        ChatMessage("user", "something else", parts=(TextPart("hello"),))


def test_the_rest_history_form_leaves_provider_data_and_parts_out() -> None:
    message = ChatMessage.of_parts(
        "assistant", [TextPart("hi")], provider_data={"openai": {"x": 1}}
    )
    assert message.to_json() == {"role": "assistant", "content": "hi"}


def test_the_message_event_round_trips_its_provider_data() -> None:
    data: dict[str, JSON] = {"signing": {"signature": "abc"}, "other": [1, None]}
    event = AssistantMessage("msg_1", "hi", "ask", provider_data=data)
    wire_type, payload = encode_event(event)
    assert payload["provider_data"] == data
    assert decode_event(wire_type, payload) == event


def test_the_message_event_without_provider_data_keeps_its_wire_form() -> None:
    _, payload = encode_event(AssistantMessage("msg_1", "hi", "ask"))
    assert payload == {
        "message_id": "msg_1",
        "role": "assistant",
        "content": "hi",
        "agent": "ask",
        "truncated": False,
        "tool_calls": [],
    }


# -- provider data through the session log -------------------------------------


@attrs.define
class SigningModel:
    """Answers call *n* with ``answer n`` and provider data naming *n*; records requests.

    With ``fail`` it sends the data and then fails, before finishing.
    """

    fail: bool = False
    requests: list[ModelRequest] = attrs.field(factory=list)

    @property
    def name(self) -> str:
        return "signing"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        self.requests.append(request)
        yield self._deltas(len(self.requests))

    async def _deltas(self, n: int) -> AsyncIterator[ModelDelta]:
        yield TextDelta(f"answer {n}")
        yield ProviderDataDelta("signing", {"signature": f"sig-{n}", "lone": "\ud800"})
        yield ProviderDataDelta("other", [n])
        if self.fail:
            raise ModelError("upstream broke", retryable=False)
        yield FinishDelta()


def signed(n: int) -> dict[str, JSON]:
    """The provider data of answer *n* as stored (the lone surrogate repaired)."""
    return {"signing": {"signature": f"sig-{n}", "lone": "\ufffd"}, "other": [n]}


async def turn(h: Harness, session: Session, content: str) -> None:
    events = await h.events(session)
    after = events[-1].seq if events else 0
    await h.message(session, content)
    end = await h.wait_for(session, "turn.ended", after=after)
    assert end.data["reason"] == "completed"


def assistant_data(request: ModelRequest) -> list[object]:
    return [m.provider_data for m in request.messages if m.role == "assistant"]


async def test_provider_data_comes_back_to_the_provider_on_the_next_turn() -> None:
    model = SigningModel()
    async with open_runtime(model=model) as h:
        s = await h.session("ask")
        await turn(h, s, "one")
        await turn(h, s, "two")
        [message] = [ev for ev in await h.events(s) if ev.type == "message"][:1]
        assert message.data["provider_data"] == signed(1)
    first, second = model.requests
    assert assistant_data(first) == []
    assert assistant_data(second) == [signed(1)]
    assert [m.content for m in second.messages[1:]] == ["one", "answer 1", "two"]


async def test_provider_data_survives_a_restart() -> None:
    model = SigningModel()
    async with open_memory_store() as store:
        async with open_runtime(model=model, store=store) as h:
            s = await h.session("ask")
            await turn(h, s, "one")
            await turn(h, s, "two")
        # A fresh fold of the stored log knows it...
        state = SessionState(s.id)
        state.apply_all(await store.read_events(s.id))
        assert [m.provider_data for m in state.messages] == [{}, signed(1), {}, signed(2)]
        # ...and so does a new supervisor over the same store, which loads the session anew.
        async with open_runtime(model=model, store=store) as h:
            await turn(h, s, "three")
    assert assistant_data(model.requests[-1]) == [signed(1), signed(2)]


async def test_a_failed_answer_keeps_no_provider_data() -> None:
    async with open_runtime(model=SigningModel(fail=True)) as h:
        s = await h.session("ask")
        await h.message(s, "one")
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "error"
        [message] = [ev for ev in await h.events(s) if ev.type == "message"]
        assert message.data["truncated"] is True
        assert "provider_data" not in message.data
        history = await h.supervisor.history(s)
        assert [m.provider_data for m in history if m.role == "assistant"] == [{}]


async def test_a_scripted_turn_stores_no_provider_data() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        await turn(h, s, "hello")
        messages = [ev for ev in await h.events(s) if ev.type == "message"]
        assert messages and all("provider_data" not in ev.data for ev in messages)
