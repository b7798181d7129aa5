"""The ``Llm`` interface every provider, wrapper and mock implements.

``chat()``/``stream()`` check their arguments (:mod:`cowork_llm.request`,
:class:`~cowork_llm.request.ChatOptions`) before anything is sent, then hand the checked
messages and options to :meth:`Llm.send` / :meth:`Llm.send_stream`, which implementations
write. Wrappers pass the checked values on to the Llm they wrap.
"""

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Type

from .request._messages import Message, build_messages, prompt_hash, validate_messages
from .request._options import ChatOptions, check_max_tokens, check_options, check_temperature
from .results import ChatResult, EmbeddingResult
from .streaming import ChatStream, StreamState

if TYPE_CHECKING:
    from .health import HealthStatus
    from .limits import LimitsSnapshot
    from .tools import ToolRun
    from .usage import UsageSnapshot

__all__ = ["Llm", "Message", "ChatOptions", "validate_messages", "prompt_hash", "build_messages",
           "check_options", "check_temperature", "check_max_tokens"]


class Llm(ABC):
    """A chat model. Implementations are safe to share between threads."""

    name: str = "llm"

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        top_p: Optional[float] = None,
        stop: Any = None,
        seed: Optional[int] = None,
        response_format: Any = None,
        reasoning_effort: Optional[str] = None,
        extra_body: Optional[Dict[str, Any]] = None,
        cache: bool = True,
        tools: Optional[Sequence[Any]] = None,
        tool_choice: Any = None,
        parallel_tool_calls: Optional[bool] = None,
    ) -> ChatResult:
        """Send ``messages`` and return the answer.

        ``messages`` follow OpenAI's chat format (:mod:`cowork_llm.request`: roles system,
        developer, user, assistant, tool; content a string or text/image parts). The
        options (None: the configured default, else the provider's):

        - ``temperature`` (0-2), ``top_p`` (0-1), ``max_tokens`` (at least 1), ``stop``
          (a string or up to 4), ``seed`` (an integer);
        - ``response_format``: ``{"type": "json_object"}``, ``{"type": "json_schema",
          "json_schema": {...}}`` or a dataclass type; the answer's JSON (or instance)
          is ``ChatResult.parsed`` (:mod:`cowork_llm.request`);
        - ``reasoning_effort``: ``"minimal"``, ``"low"``, ``"medium"``, ``"high"`` (and the
          other values of :data:`cowork_llm.request.REASONING_EFFORTS`);
        - ``extra_body``: a dict merged into the provider's request body last, for
          anything not modelled here;
        - ``cache=False``: the response cache neither answers nor stores this call;
        - ``tools``: OpenAI-format tool dicts or plain Python functions (their schema
          from type hints and docstring, :mod:`cowork_llm.tools`); ``tool_choice``
          ``"auto"``, ``"none"``, ``"required"`` or ``{"type": "function", "function":
          {"name": ...}}``; ``parallel_tool_calls``. The calls the model asks for are
          ``ChatResult.tool_calls`` (run them yourself, or let :meth:`run_tools` do it).

        Raises:
            TypeError: an unknown option.
            ValueError: bad messages or options, or one the provider does not have
                (before any request).
            LlmApiError: a subclass saying what went wrong with the request.
            InvalidResponseError: with ``response_format``, an answer that is not JSON
                or does not match the schema.
        """
        options = ChatOptions.of(
            temperature=temperature, max_tokens=max_tokens, top_p=top_p, stop=stop, seed=seed,
            response_format=response_format, reasoning_effort=reasoning_effort, extra_body=extra_body,
            cache=cache, tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls)
        return self.send(validate_messages(messages), options)

    @abstractmethod
    def send(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatResult:
        """:meth:`chat` after its checks: ``messages`` come from
        :func:`~cowork_llm.request.validate_messages`, ``options`` are checked.

        Raises what :meth:`chat` raises (ValueError for an option this Llm lacks)."""

    def generate_content(self, prompt: str, system_prompt: Optional[str] = None, **options: Any) -> str:
        """Answer one prompt; the text only. ``options`` are :meth:`chat`'s. Raises what
        :meth:`chat` raises."""
        return self.chat(build_messages(prompt, system_prompt), **options).content

    def stream(
        self,
        messages: Sequence[Message],
        *,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        top_p: Optional[float] = None,
        stop: Any = None,
        seed: Optional[int] = None,
        response_format: Any = None,
        reasoning_effort: Optional[str] = None,
        extra_body: Optional[Dict[str, Any]] = None,
        cache: bool = True,
        tools: Optional[Sequence[Any]] = None,
        tool_choice: Any = None,
        parallel_tool_calls: Optional[bool] = None,
    ) -> ChatStream:
        """Return the answer as a :class:`~cowork_llm.streaming.ChatStream`: an iterator
        of text pieces and a context manager. Takes :meth:`chat`'s options (streams are
        never cached).

        Raises what :meth:`chat` raises, before the first piece; a stream that fails
        mid-answer raises its LlmApiError while being iterated."""
        options = ChatOptions.of(
            temperature=temperature, max_tokens=max_tokens, top_p=top_p, stop=stop, seed=seed,
            response_format=response_format, reasoning_effort=reasoning_effort, extra_body=extra_body,
            cache=cache, tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls)
        return self.send_stream(validate_messages(messages), options)

    def send_stream(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatStream:
        """:meth:`stream` after its checks. This default asks :meth:`send` and yields the
        whole answer as one piece; providers override it with real streaming."""
        result = self.send(messages, options)
        state = StreamState(model=result.model, request_id=result.request_id,
                            usage=result.usage, finish_reason=result.finish_reason,
                            response_format=options.response_format)
        return ChatStream(iter([result.content]), state)

    def stream_content(self, prompt: str, system_prompt: Optional[str] = None, **options: Any) -> ChatStream:
        """:meth:`stream` for one prompt. Raises what :meth:`stream` raises."""
        return self.stream(build_messages(prompt, system_prompt), **options)


    def run_tools(self, messages: Sequence[Message], tools: Sequence[Any], *, max_steps: int = 8,
                  on_tool_error: str = "return", **options: Any) -> "ToolRun":
        """Chat until the model answers without calling a tool, running the Python
        functions in ``tools`` it calls (in order, in this thread) and sending their
        results back. Each model step is one :meth:`chat` (``options`` go to each; a
        forced ``tool_choice`` applies to the first step only). See
        :func:`cowork_llm.tools.run_tools`.

        Raises:
            ValueError: bad messages, tools or options (before any request).
            MaxStepsError: still calling tools after ``max_steps`` steps (carries the
                transcript so far).
            ToolExecutionError: a tool raised and ``on_tool_error="raise"``.
            LlmApiError: a model step failed (after its retries).
        """
        from .tools import run_tools

        return run_tools(self, messages, tools, max_steps=max_steps, on_tool_error=on_tool_error, **options)
    def usage(self) -> "UsageSnapshot":
        """The usage totals (calls, tokens, cost) of this client so far.

        Raises:
            NotImplementedError: this Llm keeps no totals (the clients of
                :func:`~cowork_llm.create_llm_client` do).
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no usage totals")

    def limits(self) -> "LimitsSnapshot":
        """What the rate limiter knows: the configured limits and those learned from the
        provider's rate-limit headers (a frozen :class:`~cowork_llm.limits.LimitsSnapshot`).

        Raises:
            NotImplementedError: this Llm has no rate limiter (the clients of
                :func:`~cowork_llm.create_llm_client` do).
        """
        raise NotImplementedError(f"{type(self).__name__} has no rate limiter")

    def embed(self, texts: Sequence[str], *, dimensions: Optional[int] = None) -> EmbeddingResult:
        """The embedding of each text, in input order (``dimensions`` asks models that
        can shorten their vectors for that length).

        Raises:
            ValueError: bad texts or dimensions (before any request).
            ConfigError: no embeddings model is configured, or the provider has no
                embeddings endpoint (Anthropic).
            NotImplementedError: this Llm cannot embed.
            LlmApiError: a subclass saying what went wrong with the request.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot embed")

    def health(self, *, timeout: float = 5.0) -> "HealthStatus":
        """Check that the provider answers and accepts the key, using no completion quota.

        Raises:
            NotImplementedError: this Llm cannot check a provider (HTTP providers and
                RateLimitedLlm can).
        """
        raise NotImplementedError(f"{type(self).__name__} has no health check")

    def close(self) -> None:  # noqa: B027 - optional hook: most Llms hold nothing to close
        """Release connections and threads. Safe to call twice; never raises."""

    def __enter__(self) -> "Llm":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
