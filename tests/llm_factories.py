"""Tiny random causal LMs built in code (seconds, offline) for the llm-prompt and llm-head backends.

A byte-level BPE tokenizer trained in code on ``factories.WORDS`` with a ChatML chat template, a
2-layer Llama with grouped-query attention, and a writer that stores such a model as a GGUF file the
way llama.cpp's converter lays it out (q/k rows permuted), so GGUF loading is tested end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from factories import WORDS

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def write_bpe_tokenizer(folder: Path, chat_template: str | None = CHATML) -> None:
    """A GPT-2 style byte-level BPE (vocabulary ~400) with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(0, len(WORDS), 7)] + ["Here is a text: category? Answer:"]
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=256)
    if chat_template:
        fast.chat_template = chat_template
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)


def llama_config(vocab_size: int, **overrides):
    from transformers import LlamaConfig

    values = {"vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
              "initializer_range": 0.2, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
              "pad_token_id": 0, "rms_norm_eps": 1e-5}
    return LlamaConfig(**{**values, **overrides})


def tiny_llm(folder: Path, seed: int = 0, chat_template: str | None = CHATML, **overrides) -> Path:
    """A random 2-layer LlamaForCausalLM folder (safetensors) with the BPE tokenizer."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    write_bpe_tokenizer(folder, chat_template)
    torch.manual_seed(seed)
    LlamaForCausalLM(llama_config(len(AutoTokenizer.from_pretrained(folder)), **overrides)).save_pretrained(folder)
    return folder


def tiny_llm_head(folder: Path, seed: int = 0) -> Path:
    """A tiny causal LM marked for the llm-head backend, in label-set mode (no fixed labels)."""
    tiny_llm(folder, seed)
    (folder / "udtc_head.json").write_text(json.dumps({"labels": None}) + "\n", encoding="utf-8")
    return folder


def write_gguf(model_folder: Path, out: Path) -> Path:
    """Store the tiny Llama in ``model_folder`` as a float32 GGUF file (llama.cpp's tensor names and layout)."""
    import gguf
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_folder)
    tok = AutoTokenizer.from_pretrained(model_folder)
    cfg = model.config
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in SPECIAL else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(vocab["<|im_start|>"])
    w.add_eos_token_id(vocab["<|im_end|>"])
    w.add_pad_token_id(vocab["<|endoftext|>"])
    w.add_add_bos_token(False)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)

    def rope_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:  # HF halves -> llama.cpp interleaved pairs
        rows = weight.shape[0] // heads // 2
        return weight.reshape(heads, 2, rows, -1).transpose(1, 2).reshape(weight.shape)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().float()
        if name in names:
            gguf_name = names[name]
        else:
            _, _, layer, *rest = name.split(".")
            module = ".".join(rest[:-1])
            gguf_name = f"blk.{layer}.{parts[module]}.weight"
            if module == "self_attn.q_proj":
                tensor = rope_rows(tensor, cfg.num_attention_heads)
            elif module == "self_attn.k_proj":
                tensor = rope_rows(tensor, cfg.num_key_value_heads)
        w.add_tensor(gguf_name, tensor.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
