"""Zero-shot classification by prompting a causal LM and scoring each label as its answer
(Maheshwari & Raina, "Soft Contextualized Encoder for User Defined Text Classification", App. D and
G.1, `shared/papers/sce-soft-contextualized-encoder.txt`; contextual calibration from Zhao et al.,
"Calibrate Before Use", ICML 2021, arXiv:2102.09690).

App. D reads the next-token logits after a prompt ``Here is a sentence: x. Which topic does it belong
to from the set {y_1, ..., y_L}? Return only the topic.`` and takes a softmax over the labels' (single)
tokens (Eq. 4). Here a label may be many tokens, so each label is scored by the log-probability of its
whole token sequence, closed by the end-of-answer token of the chat template, as the answer:

    s(y | x) = sum_j log p(y_j | prompt(x), y_<j)             # Eq. (4), multi-token form ("sum")
    s(y | x) = s / |y|                                        # length-normalised ("mean")
    p(y | x) = softmax_y(s(y | x))                            # Eq. (4)
    s_cal(y | x) = s(y | x) - log p_cf(y),                    # contextual calibration (Zhao et al. Eq. 1:
    p_cf(y) = mean_{c in {"N/A", "", "[MASK]"}} softmax_y s(y | c)      W = diag(p_cf)^-1, b = 0)

``prompt_mode="listed"`` writes the label set into the prompt (App. D) in a canonical (sorted) order,
so that scores do not depend on the caller's order; ``prompt_mode="single"`` does not list the labels,
so each label is scored on its own. The prompt is run once per text and its KV cache is reused for every
label: the cache is expanded over (text, label) pairs and the right-padded continuations run against
it in one pass. Defaults (``prompt_mode="single"``, ``calibrate=True``, ``reduction="mean"``) are the best
mean macro-F1 of SmolLM2-135M-Instruct on SMS spam / TREC-6 / movie sentiment (``benchmarks/llm.py``).
Multi-label logits: ``logit p(y | x)`` (uncalibrated), ``s - log mean_c exp s(y | c)``
(calibrated, so sigmoid = p / (p + p_cf)).

Fine-tuning: ``finetune(..., method="instruction")`` (``train.py``: arXiv 2512.12677, Approach 2).
"""

from __future__ import annotations

import json
import math
import re
import string
from pathlib import Path
from typing import Any, ClassVar

import torch

from udtc.backends._text import _CHARS_PER_TOKEN, LabelCache, special_ids
from udtc.backends.base import Backend, Scores
from udtc.compat import cache_keyword, output_cache
from udtc.backends.llm.config import LlmPromptOptions
from udtc.backends.llm.train import InstructionTraining

#: the prompts by mode; ``{text}`` is the text, ``{labels}`` the comma-separated sorted label set
PROMPTS = {
    "single": "Here is a text: {text}\nWhich category does it belong to? Return only the category.",
    "listed": "Here is a text: {text}\nWhich category does it belong to from the set {{{labels}}}? "
              "Return only the category.",
}
#: the turn format for tokenizers without a chat template
PLAIN_FORMAT = "{prompt}\nAnswer: {answer}\n"
#: content-free texts of contextual calibration (Zhao et al. 2021, Sec. 5)
CONTENT_FREE = ("N/A", "", "[MASK]")
_TEXT, _LABELS, _ANSWER = "\ue000udtc:text\ue000", "\ue000udtc:labels\ue000", "\ue000udtc:answer\ue000"
_CACHE_SIZE = 4096


class LlmPromptBackend(InstructionTraining, Backend):
    name: ClassVar[str] = "llm-prompt"
    options_class: ClassVar[type[LlmPromptOptions]] = LlmPromptOptions

    def __init__(self, model, tokenizer, *, prompt_mode: str = "single", calibrate: bool = True, reduction: str = "mean",
                 prompt: str | None = None, chat_template: bool | str = "auto", system_prompt: str | None = None,
                 answer_prefix: str = "", end_of_answer: bool = True, max_length: int = 1024, kv_cache: bool = True):
        if prompt_mode not in PROMPTS:
            raise ValueError(f"not supported yet: prompt_mode={prompt_mode!r} (use one of {sorted(PROMPTS)})")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"not supported yet: reduction={reduction!r} (use 'sum' or 'mean')")
        if chat_template not in ("auto", True, False):
            raise ValueError(f"chat_template must be 'auto', True or False, got {chat_template!r}")
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.prompt_mode, self.calibrate, self.reduction = prompt_mode, bool(calibrate), reduction
        self.prompt, self.chat_template, self.system_prompt = prompt, chat_template, system_prompt
        self.answer_prefix = answer_prefix
        self.end_of_answer, self.max_length, self.kv_cache = bool(end_of_answer), max_length, bool(kv_cache)
        self._calibration: LabelCache[tuple[torch.Tensor, torch.Tensor]] = LabelCache(_CACHE_SIZE)  # per label set
        self.rebuild_prompt()

    def rebuild_prompt(self) -> None:
        """(Re)build the prompt from the options (after ``prompt_mode`` changes, e.g. for instruction tuning)."""
        tokenizer, chat_template = self.tokenizer, self.chat_template
        use_chat = bool(tokenizer.chat_template) if chat_template == "auto" else chat_template
        if use_chat and not tokenizer.chat_template:
            raise ValueError("chat_template=True but the tokenizer has no chat template; pass chat_template=False")
        self.builder = PromptBuilder(tokenizer, self.prompt or PROMPTS[self.prompt_mode], chat=use_chat,
                                     system_prompt=self.system_prompt, answer_prefix=self.answer_prefix,
                                     end_of_answer=self.end_of_answer, listed=self.prompt_mode == "listed")
        self._calibration.clear()

    # ------------------------------------------------------------------ contract
    @classmethod
    def detect(cls, folder: Path) -> bool:
        from udtc.gguf import is_gguf

        return is_gguf(folder) or (is_causal_lm_folder(folder) and not (folder / "udtc_head.json").exists())

    @classmethod
    def load(cls, folder: Path, *, device: torch.device, dtype: torch.dtype | None = None,
             trust_remote_code: bool = False, **options: Any) -> LlmPromptBackend:
        opts = cls.parse_options(options)
        model, tokenizer = load_causal_lm(folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        return cls(model, tokenizer, **opts.to_dict())

    def score(self, texts: list[str], labels: list[str], *, multi_label: bool, batch_size: int, **kwargs: Any) -> Scores:
        sums, lengths, truncated = self.label_log_probs(texts, labels, batch_size)  # (N, L), (L,)
        return Scores(self.logits(sums, lengths, labels, multi_label, batch_size).float(), truncated)

    def logits(self, sums: torch.Tensor, lengths: torch.Tensor, labels: list[str], multi_label: bool,
               batch_size: int = 32) -> torch.Tensor:
        """The labels' logits (N, L) from their summed answer log-probabilities ``sums`` (N, L)."""
        s = sums / lengths if self.reduction == "mean" else sums  # Eq. (4) sum or mean
        if self.calibrate:
            log_p_cf, log_p_cf_raw = self._content_free(labels, batch_size)  # (L,), (L,)
            return s - (log_p_cf_raw if multi_label else log_p_cf)  # W = diag(p_cf)^-1
        return s - torch.log(-torch.expm1(s.clamp(max=-1e-7))) if multi_label else s  # logit p(y|x)

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)

    # ------------------------------------------------------------------ scoring
    def label_log_probs(self, texts: list[str], labels: list[str], batch_size: int = 32,
                        kv_cache: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
        """Sum of the answer-token log-probs of every label for every text.

        Returns ``(sums (N, L), answer lengths in tokens (L,), truncated per text)``.
        """
        prompts, truncated = zip(*(self.builder.prompt_ids(t, labels, self.max_length) for t in texts))
        answers = [self.builder.answer_ids(x) for x in labels]
        use_cache = self.kv_cache if kv_cache is None else kv_cache
        run = self._score_cached if use_cache and not _sliding_window(self.model, prompts, answers) else self._score_full
        with torch.inference_mode():
            sums = torch.cat([run(list(prompts[i : i + batch_size]), answers, batch_size)
                              for i in range(0, len(texts), batch_size)])
        return sums, torch.tensor([float(len(a)) for a in answers]), list(truncated)

    def _score_cached(self, prompts: list[list[int]], answers: list[list[int]], batch_size: int) -> torch.Tensor:
        """Run each prompt once; score every answer against its KV cache."""
        dev = self.device
        ids, mask = _right_pad(prompts, self._pad_id)  # (B, T)
        ids, mask = ids.to(dev), mask.to(dev)
        lengths = mask.sum(1)  # (B,)
        out = self._backbone(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                             use_cache=True)
        rows = torch.arange(len(prompts), device=dev)
        first = self._log_probs(out.last_hidden_state[rows, lengths - 1])  # (B, V): p(y_1 | prompt)
        cache = output_cache(out)
        if not hasattr(cache, "layers"):  # a cache kind without per-layer key/value tensors: re-encode instead
            return self._score_full(prompts, answers, batch_size)
        keyword = cache_keyword(self.model.base_model)  # once per call, not per chunk
        n_labels = len(answers)
        sums = torch.zeros(len(prompts) * n_labels, dtype=torch.float32)
        for start in range(0, len(prompts) * n_labels, batch_size):
            pairs = list(range(start, min(start + batch_size, len(prompts) * n_labels)))
            b = torch.tensor([p // n_labels for p in pairs], device=dev)  # (P,) prompt of each pair
            chunk = [answers[p % n_labels] for p in pairs]
            total = first[b, torch.tensor([a[0] for a in chunk], device=dev)]  # (P,)
            if max(len(a) for a in chunk) > 1:
                cont, cont_mask = _right_pad([a[:-1] for a in chunk], self._pad_id)  # (P, C)
                cont, cont_mask = cont.to(dev), cont_mask.to(dev)
                positions = lengths[b, None] + torch.arange(cont.shape[1], device=dev)  # (P, C)
                past = _select_cache(cache, b, self.model.config)
                hidden = self._backbone(input_ids=cont, attention_mask=torch.cat([mask[b], cont_mask], 1),
                                        position_ids=positions, use_cache=True,
                                        **{keyword: past}).last_hidden_state
                targets, target_mask = _right_pad([a[1:] for a in chunk], 0)  # (P, C)
                lp = self._log_probs(hidden).gather(-1, targets.to(dev)[..., None])[..., 0]  # (P, C)
                total = total + (lp * target_mask.to(dev)).sum(1)
            sums[start : start + len(pairs)] = total.float().cpu()
        return sums.view(len(prompts), n_labels)

    def _score_full(self, prompts: list[list[int]], answers: list[list[int]], batch_size: int) -> torch.Tensor:
        """Reference path: encode every (prompt + answer) sequence from scratch."""
        dev = self.device
        n_labels = len(answers)
        sums = torch.zeros(len(prompts) * n_labels, dtype=torch.float32)
        for start in range(0, len(prompts) * n_labels, batch_size):
            pairs = list(range(start, min(start + batch_size, len(prompts) * n_labels)))
            seqs = [prompts[p // n_labels] + answers[p % n_labels] for p in pairs]
            ids, mask = _right_pad(seqs, self._pad_id)  # (P, T)
            hidden = self._backbone(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False).last_hidden_state
            for row, p in enumerate(pairs):
                n_prompt, answer = len(prompts[p // n_labels]), answers[p % n_labels]
                lp = self._log_probs(hidden[row, n_prompt - 1 : n_prompt - 1 + len(answer)])  # (|y|, V)
                sums[start + row] = lp.gather(-1, torch.tensor(answer, device=dev)[:, None]).sum().float().cpu()
        return sums.view(len(prompts), n_labels)

    def _content_free(self, labels: list[str], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """log p_cf per label in the caller's order: (normalised over the set, raw); cached per label set."""
        key = tuple(sorted(labels))

        def compute() -> tuple[torch.Tensor, torch.Tensor]:
            sums, lengths, _ = self.label_log_probs(list(CONTENT_FREE), list(key), batch_size)  # (C, L)
            s = sums / lengths if self.reduction == "mean" else sums
            n = math.log(len(CONTENT_FREE))
            norm = torch.logsumexp(torch.log_softmax(s, dim=-1), dim=0) - n  # log mean_c softmax_y s(y|c)
            raw = torch.logsumexp(s, dim=0) - n  # log mean_c p(y|c)
            return norm, raw

        norm, raw = self._calibration.get(key, compute)
        order = torch.tensor([key.index(x) for x in labels])
        return norm[order], raw[order]

    # ------------------------------------------------------------------ model pieces
    @property
    def _pad_id(self) -> int:
        return _pad_id(self.tokenizer)

    def _backbone(self, **kwargs):
        return self.model.base_model(**kwargs)

    def _log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.get_output_embeddings()(hidden).float()  # (..., V)
        cap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.log_softmax(logits, dim=-1)


class PromptBuilder:
    """Token ids of a prompt and of each answer; text and labels never become special tokens.

    The prompt is rendered once with placeholders (through the chat template when there is one) and
    split there: template pieces are tokenised as the template means them (its special tokens stay
    special), user pieces with ``split_special_tokens=True``.
    """

    def __init__(self, tokenizer, prompt: str, *, chat: bool, system_prompt: str | None = None, answer_prefix: str = "",
                 end_of_answer: bool = True, listed: bool = False):
        fields = {f for _, f, _, _ in string.Formatter().parse(prompt) if f is not None}
        needed = {"text", "labels"} if listed else {"text"}
        if fields != needed:
            raise ValueError(f"the prompt must contain the fields {sorted('{' + f + '}' for f in needed)} and no "
                             f"other, got {sorted('{' + f + '}' for f in fields)} in {prompt!r}")
        self.tokenizer, self.listed = tokenizer, listed
        user = prompt.format(text=_TEXT, labels=_LABELS)
        if chat:
            system = [{"role": "system", "content": system_prompt}] if system_prompt else []
            messages = [*system, {"role": "user", "content": user}, {"role": "assistant", "content": answer_prefix + _ANSWER}]
            rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        else:
            rendered = PLAIN_FORMAT.format(prompt=(system_prompt + "\n" if system_prompt else "") + user,
                                          answer=answer_prefix + _ANSWER)
        if not isinstance(rendered, str) or rendered.count(_ANSWER) != 1:
            raise ValueError("could not locate the answer in the rendered chat template; pass chat_template=False")
        before, after = rendered.split(_ANSWER)
        before, self.answer_lead = _split_trailing_spaces(before)
        self.end_ids = self._ids(after, special=True)[:1] if end_of_answer and after else []
        self.pieces: list[tuple[str, Any]] = []  # ("ids", template token ids) | ("text" | "labels", leading spaces)
        chunks = [c for c in re.split(f"({re.escape(_TEXT)}|{re.escape(_LABELS)})", before) if c]
        lead = ""
        for i, chunk in enumerate(chunks):
            if chunk in (_TEXT, _LABELS):
                self.pieces.append(("text" if chunk == _TEXT else "labels", lead))
                lead = ""
                continue
            if i + 1 < len(chunks):  # spaces before a user piece are tokenised with it, as in running text
                chunk, lead = _split_trailing_spaces(chunk)
            self.pieces.append(("ids", self._ids(chunk, special=True)))
        leading = special_ids(tokenizer, strict=False)[0]
        first = self.pieces[0][1] if self.pieces and self.pieces[0][0] == "ids" else []
        self.leading = [] if first[: len(leading)] == leading else leading  # the template may write BOS itself

    def prompt_ids(self, text: str, labels: list[str], max_length: int) -> tuple[list[int], bool]:
        """Prompt token ids for ``text`` (labels listed sorted when ``listed``) and whether it was cut."""
        limit = max(max_length * _CHARS_PER_TOKEN, 4096)
        cut = len(text) > limit
        ids = list(self.leading)
        for kind, value in self.pieces:
            if kind == "ids":
                ids += value
            elif kind == "text":
                piece = self._ids(value + text[:limit], special=False)
                cut = cut or len(piece) > max_length
                ids += piece[:max_length]
            else:
                ids += self._ids(value + ", ".join(sorted(labels)), special=False)
        return ids, cut

    def answer_ids(self, label: str) -> list[int]:
        return self._ids(self.answer_lead + label, special=False) + self.end_ids

    def _ids(self, s: str, *, special: bool) -> list[int]:
        if not s:
            return []
        return self.tokenizer(s, add_special_tokens=False, split_special_tokens=not special, verbose=False)["input_ids"]


# ---------------------------------------------------------------------- shared with llm-head
def is_causal_lm_folder(folder: Path) -> bool:
    """A transformers folder whose config names a causal-LM architecture and that has safetensors."""
    if not folder.is_dir() or not (folder / "config.json").exists():
        return False
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return False
    archs = config.get("architectures") or [] if isinstance(config, dict) else []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) and any(folder.glob("*.safetensors"))


def load_causal_lm(folder: Path, *, device: torch.device, dtype: torch.dtype | None = None,
                   trust_remote_code: bool = False):
    """(model, tokenizer) from a transformers folder, a GGUF file or a folder holding one (converted once)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from udtc.gguf import gguf_to_folder, is_gguf

    if is_gguf(folder):
        folder = gguf_to_folder(folder)
    if not folder.is_dir():
        raise ValueError(f"the LLM backends load a model folder or a .gguf file, got {folder}")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32, use_safetensors=True,
                                                 trust_remote_code=trust_remote_code).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    return model, tokenizer


def _pad_id(tokenizer) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if value is not None:
            return int(value)
    return 0


def _right_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, T)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _select_cache(cache, rows: torch.Tensor, config):
    """A new DynamicCache holding the rows ``rows`` (with repeats) of ``cache``; ``cache`` is untouched."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in cache.layers], config=config)


def _sliding_window(model, prompts, answers) -> bool:
    """True when a sliding-window layer could drop prompt tokens: then the cache path is not exact."""
    window = getattr(model.config.get_text_config(), "sliding_window", None)
    return bool(window) and max(len(p) for p in prompts) + max(len(a) for a in answers) >= window


def _split_trailing_spaces(s: str) -> tuple[str, str]:
    stripped = s.rstrip(" ")
    return stripped, s[len(stripped) :]
