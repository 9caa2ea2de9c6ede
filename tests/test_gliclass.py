"""GLiClass backend: conformance with the reference library (gliclass 0.1.21) on tiny random checkpoints.

Every model here is built and saved by gliclass, loaded by udtc, and scored by both. gliclass gets the
labels in udtc's canonical order (sorted) and batch size 1 (gliclass's ``avg``/``max``/``last`` text
pooling reads padding, udtc's does not); udtc gets them shuffled and scores all texts in one batch.
"""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
from logcheck import expect_log
import torch
from factories import WORDS, bert_config, tiny_encoder, write_tokenizer

from udtc import Classifier
from udtc.backends.gliclass import GLiClassBackend

gliclass = pytest.importorskip("gliclass")

SPECIAL = ("<<LABEL>>", "<<SEP>>", "<<EXAMPLE>>")
CPU = torch.device("cpu")
TEXTS = ["the team won the match with a late goal", "rain and wind in the city", "a new phone from the market!",
         "happy song"]
LABEL_SETS = [["weather", "sports", "technology"],
              ["travel", "music band", "food", "good news", "politics", "spam message"]]
EXAMPLES = [{"text": "the team played a great game", "labels": ["sports"]},
            {"text": "rain in the city", "labels": ["weather", "news"]}]
PROMPT = "classify the text:"
CONTEXTS = [{}, {"prompt": PROMPT}, {"examples": EXAMPLES}, {"examples": EXAMPLES, "prompt": PROMPT}]

# Strength-3 covering array over seven two-level factors: every combination of values of any three
# factors appears in some row (asserted in test_matrix_covers_every_triple).
FACTORS = [("pooling_strategy", ("first", "avg")), ("scorer_type", ("simple", "mlp")), ("prompt_first", (False, True)),
           ("normalize_features", (False, True)), ("extract_text_features", (False, True)),
           ("embed_class_token", (True, False)), ("class_token_pooling", ("first", "average"))]
ROWS = ["0001001", "0010110", "1100111", "1111000", "0110011", "1000100", "1001010", "0111101", "0100000",
        "1011111", "0101110", "1010001"]
MATRIX = [{name: values[int(bit)] for (name, values), bit in zip(FACTORS, row)} for row in ROWS]
EXTRA = [
    *({"pooling_strategy": p, "extract_text_features": e}
      for p in ("max", "last", "sum", "rms", "abs_max", "abs_avg") for e in (False, True)),
    {"scorer_type": "weighted-dot", "normalize_features": True},
    {"scorer_type": "weighted-dot", "pooling_strategy": "avg", "prompt_first": True},
    {"use_lstm": True, "pooling_strategy": "avg"},
    {"use_lstm": True, "pooling_strategy": "last", "extract_text_features": True, "prompt_first": True},
    {"use_lstm": True, "pooling_strategy": "max", "extract_text_features": True},
    {"encoder_layer_id": 1, "layer_wise": True, "class_token_pooling": "average"},  # gliclass needs layer_wise here
    {"layer_wise": True, "pooling_strategy": "avg"},
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run much faster on one thread on a busy machine


def _name(flags: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in flags.items()) or "defaults"


# ---------------------------------------------------------------------- building models with gliclass
@pytest.fixture(scope="module")
def bert_assets(tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("gliclass")
    write_tokenizer(root / "tokenizer", extra_special=SPECIAL)
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    encoder = bert_config(len(tokenizer))
    encoder.save_pretrained(root / "encoder")
    return root, tokenizer, encoder


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights large enough that scores differ clearly between labels (gliclass initialises with std 0.03)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "norm" in name.lower():
                continue
            if name.endswith("logit_scale"):
                param.fill_(3.0)
            elif param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=g) * 1.2 / param.shape[-1] ** 0.5)
            else:
                param.copy_(torch.randn(param.shape, generator=g) * 0.1)


def build_gliclass(folder, tokenizer, encoder, seed: int = 0, **flags):
    """A random gliclass uni-encoder saved by gliclass itself; returns (model, folder)."""
    from gliclass import GLiClassModel, GLiClassModelConfig

    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL))
    config = GLiClassModelConfig(encoder_config=encoder.to_dict(), encoder_model=str(folder.parent / "encoder"),
                                 class_token_index=ids[0], text_token_index=ids[1], example_token_index=ids[2],
                                 vocab_size=len(tokenizer), **flags)
    torch.manual_seed(seed)
    model = GLiClassModel(config).eval()
    _randomise(model, seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, folder


def gliclass_probs(model, tokenizer, texts, labels, multi_label, **context) -> list[dict[str, float]]:
    from gliclass import ZeroShotClassificationPipeline

    pipe = ZeroShotClassificationPipeline(model, tokenizer, classification_type="multi-label" if multi_label else "single-label",
                                          device="cpu", progress_bar=False)
    return pipe(texts, labels, batch_size=1, return_hierarchical=True, **context)


def gliclass_logits(model, tokenizer, text, labels, **context) -> torch.Tensor:
    from gliclass import ZeroShotClassificationPipeline

    pipe = ZeroShotClassificationPipeline(model, tokenizer, device="cpu", progress_bar=False).pipe
    inputs = pipe.prepare_inputs([text], labels, same_labels=True, examples=context.get("examples"),
                                 prompt=context.get("prompt"))
    with torch.no_grad():
        return model(**inputs, max_num_classes=len(labels)).logits[0]


def assert_conforms(model, tokenizer, clf: Classifier, texts=TEXTS, label_sets=LABEL_SETS, contexts=CONTEXTS):
    """udtc (shuffled labels, one batch) == gliclass (sorted labels, batch size 1): probabilities from the
    pipeline, single- and multi-label, and raw logits (for the first context, to keep the suite quick)."""
    for labels, context in itertools.product(label_sets, contexts):
        shuffled = labels[1:] + labels[:1]
        canonical = sorted(labels)
        for multi_label in (False, True):
            ours = clf.classify(texts, shuffled, multi_label=multi_label, **context)
            expected = gliclass_probs(model, tokenizer, texts, canonical, multi_label, **context)
            for pred, ref in zip(ours, expected):
                for label in labels:
                    assert abs(pred.scores[label] - ref[label]) <= 1e-4, (pred.text, label, context, multi_label)
        if context is contexts[0]:
            logits = clf.backend.score(texts, shuffled, multi_label=False, batch_size=8, **context).logits
            for i, text in enumerate(texts):
                ref = gliclass_logits(model, tokenizer, text, canonical, **context)
                torch.testing.assert_close(logits[i, [shuffled.index(x) for x in canonical]], ref, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------- conformance
def test_matrix_covers_every_triple():
    for columns in itertools.combinations(range(len(FACTORS)), 3):
        seen = {tuple(row[c] for c in columns) for row in ROWS}
        assert len(seen) == 8, columns


@pytest.mark.parametrize("flags", MATRIX + EXTRA, ids=_name)
def test_scores_equal_gliclass_pipeline(bert_assets, flags):
    root, tokenizer, encoder = bert_assets
    model, folder = build_gliclass(root / _name(flags), tokenizer, encoder, **flags)
    clf = Classifier.from_pretrained(folder, device="cpu")
    assert clf.backend_name == "gliclass"
    assert_conforms(model, tokenizer, clf, contexts=CONTEXTS if flags in MATRIX else CONTEXTS[::3])


def test_squeeze_layers_equals_gliclass_layerwise_attention_over_layer_outputs(bert_assets):
    """gliclass 0.1.21 feeds its LayerwiseAttention(num_hidden_layers) all hidden states including the
    embeddings (num_hidden_layers + 1) and fails; udtc re-weights the layer outputs, Eq. (3)-(6)."""
    root, tokenizer, encoder = bert_assets
    model, folder = build_gliclass(root / "squeeze", tokenizer, encoder, squeeze_layers=True, pooling_strategy="avg")
    attention = model.model.layer_wise_attention
    forward = attention.forward
    attention.forward = lambda hidden_states: forward(hidden_states[1:])
    assert_conforms(model, tokenizer, Classifier.from_pretrained(folder, device="cpu"), contexts=CONTEXTS[:2])


def test_deberta_v2_encoder_and_sentencepiece_tokenizer(tmp_path):
    """DeBERTa-v3 style: Metaspace tokenizer (segments tokenised apart equal gliclass's joint string)."""
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Tokenizer

    vocab = [(t, 0.0) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    vocab += [("▁" + w, -5.0) for w in WORDS] + [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz.,!?':"] + [("▁", -3.0)]
    DebertaV2Tokenizer(vocab=vocab).save_pretrained(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL)})
    encoder = DebertaV2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=37, max_position_embeddings=128, relative_attention=True,
                              position_buckets=16, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (tmp_path / "encoder").mkdir()
    model, folder = build_gliclass(tmp_path / "model", tokenizer, encoder, pooling_strategy="avg", prompt_first=True)
    clf = Classifier.from_pretrained(folder, device="cpu")
    assert clf.backend.max_length == 1024  # relative positions: gliclass's default length
    assert_conforms(model, tokenizer, clf, contexts=CONTEXTS[::3])


def test_modernbert_encoder(bert_assets, tmp_path):
    from transformers import ModernBertConfig

    _, tokenizer, _ = bert_assets
    encoder = ModernBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=256, pad_token_id=0, cls_token_id=2,
                               sep_token_id=3, bos_token_id=2, eos_token_id=3)
    (tmp_path / "encoder").mkdir()
    model, folder = build_gliclass(tmp_path / "model", tokenizer, encoder, class_token_pooling="average")
    assert_conforms(model, tokenizer, Classifier.from_pretrained(folder, device="cpu"), contexts=CONTEXTS[::3])


def test_old_config_without_newer_fields_gets_gliclass_defaults(bert_assets):
    root, tokenizer, encoder = bert_assets
    model, folder = build_gliclass(root / "old", tokenizer, encoder)
    config = json.loads((folder / "config.json").read_text())
    for key in ("pooling_strategy", "class_token_pooling", "prompt_first", "embed_class_token", "extract_text_features",
                "normalize_features", "scorer_type", "architecture_type", "squeeze_layers", "layer_wise", "use_lstm"):
        config.pop(key)
    (folder / "config.json").write_text(json.dumps(config))
    assert_conforms(model, tokenizer, Classifier.from_pretrained(folder, device="cpu"), contexts=CONTEXTS[:1])


# ---------------------------------------------------------------------- reverse: udtc saves, gliclass loads
@pytest.mark.parametrize("flags", [{}, {"scorer_type": "mlp", "pooling_strategy": "avg", "prompt_first": True},
                                   {"use_lstm": True, "extract_text_features": True, "class_token_pooling": "average"}],
                         ids=_name)
def test_udtc_saved_model_loads_in_gliclass(bert_assets, tmp_path, flags):
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    root, tokenizer, encoder = bert_assets
    _, folder = build_gliclass(root / ("reverse-" + _name(flags)), tokenizer, encoder, **flags)
    clf = Classifier.from_pretrained(folder, device="cpu")
    saved = clf.save_pretrained(tmp_path / "saved")
    model = GLiClassModel.from_pretrained(saved).eval()
    assert_conforms(model, AutoTokenizer.from_pretrained(saved), Classifier.from_pretrained(saved, device="cpu"),
                    contexts=CONTEXTS[::3])


def test_from_encoder_builds_a_model_gliclass_loads(tmp_path):
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    encoder = tiny_encoder(tmp_path / "encoder")
    backend = GLiClassBackend.from_encoder(encoder, seed=0, pooling_strategy="avg", scorer_type="mlp")
    assert [backend.tokenizer.convert_tokens_to_ids(t) for t in SPECIAL] == [
        backend.config.class_token_index, backend.config.text_token_index, backend.config.example_token_index]
    assert backend.model.encoder_model.get_input_embeddings().num_embeddings == len(backend.tokenizer)
    with torch.no_grad():
        _randomise(backend.model, 1)
    saved = Classifier(backend).save_pretrained(tmp_path / "new")
    model = GLiClassModel.from_pretrained(saved).eval()
    clf = Classifier.from_pretrained(saved, device="cpu")
    assert clf.backend_name == "gliclass"
    assert_conforms(model, AutoTokenizer.from_pretrained(saved), clf, contexts=CONTEXTS[::3])


def test_from_encoder_rejects_unknown_options(tmp_path):
    encoder = tiny_encoder(tmp_path / "encoder")
    with pytest.raises(TypeError, match="pooling_strategy"):
        GLiClassBackend.from_encoder(encoder, pooling="avg")
    with pytest.raises(ValueError, match="not supported yet: scorer_type='hopfield'"):
        GLiClassBackend.from_encoder(encoder, scorer_type="hopfield")


# ---------------------------------------------------------------------- label order, long inputs
@pytest.fixture(scope="module")
def tiny_folder(bert_assets):
    root, tokenizer, encoder = bert_assets
    return build_gliclass(root / "tiny", tokenizer, encoder, pooling_strategy="avg")[1]


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return Classifier.from_pretrained(tiny_folder, device="cpu")


def test_labels_are_scored_in_sorted_order_whatever_the_caller_order(tiny):
    labels = LABEL_SETS[1]
    a = tiny.backend.score(TEXTS, labels, multi_label=False, batch_size=4).logits
    b = tiny.backend.score(TEXTS, labels[::-1], multi_label=False, batch_size=4).logits
    assert torch.equal(a, b.flip(-1))
    (_, columns, _), = tiny.backend.build_inputs(TEXTS[:1], labels)
    assert [labels[c] for c in columns] == sorted(labels)


def test_long_text_is_cut_and_flagged_labels_kept(tiny):
    backend = tiny.backend
    words = [w for w in WORDS if len(w) > 1] * 5
    text, labels = " ".join(words), ["sports", "weather", "music band"]
    (inputs, _, truncated), = backend.build_inputs([text], labels)
    assert truncated == [True] and int(inputs.lengths[0]) == backend.max_length
    assert int((inputs.input_ids == backend.label_id).sum()) == len(labels)
    kept = backend.max_length - len(backend.prefix) - len(backend.suffix) - (1 + len(labels) + 4)  # block: 3 labels, 4 tokens
    with expect_log("truncated"):
        pred = tiny.classify(text, labels)
    assert pred.truncated
    short = tiny.classify(" ".join(words[:kept]), labels)
    assert not short.truncated
    for label in labels:
        assert pred.scores[label] == pytest.approx(short.scores[label], abs=1e-5)


def test_label_set_longer_than_one_pass_is_split_into_chunks(tiny):
    backend = tiny.backend
    labels = [w for w in WORDS if len(w) > 2][:50]  # 50 one-token labels: 100 tokens > what a 128-token pass leaves
    text = "the team won the match with a late goal"
    passes = backend.build_inputs([text], labels)
    assert len(passes) == 2 and sorted(c for _, cols, _ in passes for c in cols) == list(range(len(labels)))
    assert all(int(inputs.lengths.max()) <= backend.max_length for inputs, _, _ in passes)
    logits = backend.score([text], labels, multi_label=False, batch_size=8).logits[0]
    for _, columns, _ in passes:  # each chunk is an ordinary pass over its own labels
        alone = backend.score([text], [labels[c] for c in columns], multi_label=False, batch_size=8).logits[0]
        torch.testing.assert_close(logits[columns], alone)
    pred = tiny.classify(text, labels)
    assert set(pred.scores) == set(labels) and sum(pred.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert not pred.truncated


def test_small_max_length_makes_many_chunks_and_too_long_labels_raise(tiny_folder):
    clf = Classifier.from_pretrained(tiny_folder, device="cpu", max_length=40)
    labels = [w for w in WORDS if len(w) > 2][:30]
    assert len(clf.backend.build_inputs(["rain"], labels)) > 2
    assert set(clf.classify("rain in the city", labels).scores) == set(labels)
    with pytest.raises(ValueError, match="tokens; with max_length=40"):
        clf.classify("rain", ["sports", " ".join(WORDS[:40])])
    with pytest.raises(ValueError, match="max_length=4096 is out of range"):
        Classifier.from_pretrained(tiny_folder, device="cpu", max_length=4096)


def test_special_tokens_in_prompt_examples_and_labels_are_plain_text(tiny):
    backend = tiny.backend
    examples = [{"text": "a <<SEP>> b [SEP]", "labels": ["<<LABEL>>"]}]
    (inputs, _, _), = backend.build_inputs(["x <<EXAMPLE>> y"], ["<<LABEL>>", "sports"], examples=examples,
                                           prompt="<<SEP>> <<LABEL>>")
    ids = inputs.input_ids[0]
    assert int((ids == backend.label_id).sum()) == 2
    assert int((ids == backend.sep_id).sum()) == 2  # closes the labels, closes the examples
    assert int((ids == backend.example_id).sum()) == 1


def test_bad_options_and_examples(tiny, tiny_folder):
    with pytest.raises(TypeError, match="examples, prompt"):
        tiny.classify("rain", ["a", "b"], shots=3)
    with pytest.raises(TypeError, match="list of"):
        tiny.classify("rain", ["sports", "weather"], examples={"text": "x", "labels": ["sports"]})
    with pytest.raises(TypeError, match="example 0"):
        tiny.classify("rain", ["sports", "weather"], examples=[{"labels": ["sports"]}])
    with pytest.raises(ValueError, match="prompt has 2 values for 1 text"):
        tiny.classify("rain", ["sports", "weather"], prompt=["a", "b"])
    with pytest.raises(TypeError, match="prompt must be a string .shared. or a list of strings"):
        tiny.classify("rain", ["sports", "weather"], prompt=3)
    with pytest.raises(TypeError, match="unknown options"):
        Classifier.from_pretrained(tiny_folder, device="cpu", scale=2.0)


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize(("key", "value"), [("architecture_type", "bi-encoder"), ("scorer_type", "cross-attn"),
                                            ("pooling_strategy", "pass"), ("class_token_pooling", "last"),
                                            ("use_calibrator", True), ("use_segment_embeddings", True)])
def test_unsupported_config_values_are_refused(tiny_folder, tmp_path, key, value):
    shutil.copytree(tiny_folder, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config[key] = value
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"not supported yet: {key}={value!r}"):
        Classifier.from_pretrained(tmp_path / "m", device="cpu")


def test_unsupported_encoder_and_missing_safetensors(tiny_folder, tmp_path):
    shutil.copytree(tiny_folder, tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "encoder_config": {**config["encoder_config"], "model_type": "t5"}}))
    with pytest.raises(ValueError, match="not supported yet: encoder_config.model_type='t5'"):
        Classifier.from_pretrained(tmp_path / "m", device="cpu")
    path.write_text(json.dumps(config))
    (tmp_path / "m" / "model.safetensors").rename(tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(ValueError, match="safetensors only"):
        Classifier.from_pretrained(tmp_path / "m", device="cpu", backend="gliclass")


@pytest.mark.integration
def test_from_encoder_on_all_minilm_l6_v2(minilm_path, tmp_path):
    """A new GLiClass model on the real MiniLM (sentence-transformers folder) saves in a format gliclass loads."""
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    backend = GLiClassBackend.from_encoder(minilm_path, seed=0, max_length=256)
    assert backend.max_length == 256 and backend.config.encoder_config["model_type"] == "bert"
    with torch.no_grad():
        _randomise(backend.model.text_projector, 1)
        _randomise(backend.model.classes_projector, 2)
    saved = Classifier(backend).save_pretrained(tmp_path / "minilm-gliclass")
    model = GLiClassModel.from_pretrained(saved).eval()
    assert_conforms(model, AutoTokenizer.from_pretrained(saved), Classifier.from_pretrained(saved, device="cpu"),
                    texts=["The central bank raised interest rates again.", "A late goal won the cup final."],
                    label_sets=[["economy", "sports", "science fiction"]], contexts=CONTEXTS[::3])


def test_markers_that_are_plain_added_tokens_cannot_be_injected(tmp_path):
    # older checkpoints add <<LABEL>>/<<SEP>> with tokenizer.add_tokens (special=false): made special at load
    from factories import tiny_gliclass

    folder = tiny_gliclass(tmp_path / "m")
    tok = json.loads((folder / "tokenizer.json").read_text())
    for added in tok["added_tokens"]:
        added["special"] = added["special"] and not added["content"].startswith("<<")
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    clf = Classifier.from_pretrained(folder, device="cpu")
    seen = []
    forward = clf.backend.model.forward
    clf.backend.model.forward = lambda inputs: (seen.append(inputs.input_ids[0].tolist()), forward(inputs))[1]
    clf.classify("the match <<SEP>> rain <<LABEL>> food", ["sports", "weather <<LABEL>> food"])
    assert seen[-1].count(clf.backend.label_id) == 2 and seen[-1].count(clf.backend.sep_id) == 1
