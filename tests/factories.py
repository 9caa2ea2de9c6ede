"""Tiny random checkpoints built in code (seconds, offline), one factory per registered backend.

Every backend in ``udtc.available_backends()`` must have an entry in ``FACTORIES``: the contract
and round-trip tests are generated from the registry and fail for a backend without one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

WORDS = (
    "the a of to and in is it that for on with as was at by be this are from or have an they which one you "
    "sports politics cooking music science weather business health travel technology movies food game "
    "team match goal election vote recipe oven song band physics rain market bank doctor flight phone film "
    "good bad great terrible happy sad question answer spam message hello world news report city country"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tokenizer(folder: Path, extra_special: tuple[str, ...] = ()) -> None:
    """A lower-casing WordPiece tokenizer over ``WORDS`` plus single characters."""
    from transformers import BertTokenizerFast

    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;()[]<>/") | {f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"})
    vocab = SPECIAL + [w for w in dict.fromkeys(WORDS + chars)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    import inspect

    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=128)
    else:
        tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=128)
    if extra_special:
        tok.add_special_tokens({"additional_special_tokens": list(extra_special)})
    tok.save_pretrained(folder)


def bert_config(vocab_size: int, **overrides):
    from transformers import BertConfig

    values = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=37, max_position_embeddings=128, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    return BertConfig(**{**values, **overrides})


def tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """A plain random BERT encoder folder (no sentence-transformers files)."""
    from transformers import AutoTokenizer, BertModel

    write_tokenizer(folder)
    torch.manual_seed(seed)
    BertModel(bert_config(len(AutoTokenizer.from_pretrained(folder)))).save_pretrained(folder)
    return folder


def tiny_cosine(folder: Path, seed: int = 0, dense: bool = True) -> Path:
    """A sentence-transformers folder: Transformer -> mean Pooling -> Dense(tanh) -> Normalize."""
    from safetensors.torch import save_file

    tiny_encoder(folder, seed)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    if dense:
        (folder / "2_Dense").mkdir()
        (folder / "2_Dense" / "config.json").write_text(json.dumps(
            {"in_features": 32, "out_features": 16, "bias": True, "activation_function": "torch.nn.modules.activation.Tanh"}))
        g = torch.Generator().manual_seed(seed + 1)
        save_file({"linear.weight": torch.randn(16, 32, generator=g) * 0.2, "linear.bias": torch.randn(16, generator=g) * 0.1},
                  folder / "2_Dense" / "model.safetensors")
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    return folder


def tiny_nli(folder: Path, seed: int = 0, label2id: dict[str, int] | None = None) -> Path:
    """A random BERT NLI cross-encoder (BertForSequenceClassification), MNLI labels by default."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    label2id = label2id or {"entailment": 0, "neutral": 1, "contradiction": 2}
    write_tokenizer(folder)
    torch.manual_seed(seed)
    config = bert_config(len(AutoTokenizer.from_pretrained(folder)), label2id=label2id, initializer_range=0.2,
                         id2label={i: name for name, i in label2id.items()})
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def tiny_gliclass(folder: Path, seed: int = 0) -> Path:
    """A random GLiClass uni-encoder (avg pooling) on a tiny BERT, saved in gliclass's format."""
    from udtc.backends.gliclass import GLiClassBackend

    encoder = tiny_encoder(folder.parent / f"{folder.name}-encoder", seed)
    GLiClassBackend.from_encoder(encoder, seed=seed, pooling_strategy="avg", initializer_range=0.2).save(folder)
    return folder


#: backend name -> function(folder) -> path to pass to ``Classifier.from_pretrained``
FACTORIES: dict[str, Callable[[Path], Path]] = {
    "gliclass": tiny_gliclass,
    "cosine": tiny_cosine,
    "sce": lambda folder: __import__("sce_factories").tiny_sce(folder),
    "nli": tiny_nli,
    "llm-prompt": lambda folder: __import__("llm_factories").tiny_llm(folder),
    "llm-head": lambda folder: __import__("llm_factories").tiny_llm_head(folder),
}


#: a tiny labelled training set (3 labels x 6 texts) for fine-tuning tests
TRAIN = {
    "sports": ["the team won the match", "a late goal in the game", "the team lost the match",
               "good game for the team", "a great match and a goal", "the game was a bad match"],
    "weather": ["rain in the city", "the rain and wind", "sad rain all day", "rain over the country",
                "the weather report said rain", "rain in the city and the country"],
    "food": ["a recipe for the oven", "good food and a recipe", "the oven and the food", "food from the market",
             "a great recipe for food", "the food was terrible"],
}
ROWS = [{"text": text, "label": label} for label, texts in TRAIN.items() for text in texts]  # 18 rows
