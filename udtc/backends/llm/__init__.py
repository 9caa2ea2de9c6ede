"""Causal language models: ``llm-prompt`` (``prompt.py``) and ``llm-head`` (``head.py``)."""

from udtc.backends.llm.head import LlmHeadBackend
from udtc.backends.llm.prompt import LlmPromptBackend

__all__ = ["LlmHeadBackend", "LlmPromptBackend"]
