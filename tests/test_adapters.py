"""Loading a plain LoRA adapter without peft (udtc.adapters.merge_plain_lora), checked against peft's own merge."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import udtc
from factories import ROWS
from udtc import Classifier
from udtc.adapters import merge_plain_lora

TEXTS = ["a goal for the team", "rain and wind in the city", "a recipe with food"]


@pytest.fixture(scope="module")
def adapter(tiny_models, tmp_path_factory):
    """A LoRA adapter finetune saved over a tiny cosine model, with its lora_B moved off zero."""
    out = tmp_path_factory.mktemp("adapter") / "lora"
    udtc.finetune(tiny_models("cosine"), ROWS, output_dir=out, method="lora", epochs=1, lora_dropout=0.0,
                  learning_rate=5e-2, progress=False)
    return out


def _scores(clf: Classifier) -> torch.Tensor:
    return torch.tensor([list(p.scores.values()) for p in clf.classify(TEXTS, ["sports", "weather", "food"])])


def test_plain_merge_scores_as_peft_merge_and_loads_without_peft(adapter, monkeypatch):
    from peft import PeftModel

    base = Classifier.from_pretrained(adapter / "base", device="cpu")
    before = _scores(base)
    peft_model = PeftModel.from_pretrained(base.backend.trainable_module(), adapter)
    peft_model.merge_and_unload()
    base.backend.clear_cache()
    reference = _scores(base)
    assert not torch.allclose(before, reference, atol=1e-4)  # the adapter changes the scores

    monkeypatch.setitem(sys.modules, "peft", None)  # an install without the [train] extra
    loaded = Classifier.from_pretrained(adapter, device="cpu")
    torch.testing.assert_close(_scores(loaded), reference, atol=1e-5, rtol=0)


def test_what_is_not_plain_lora_is_left_to_peft_with_a_clear_message(adapter, tmp_path, monkeypatch):
    import shutil

    module = Classifier.from_pretrained(adapter / "base", device="cpu").backend.trainable_module()
    untouched = {k: v.clone() for k, v in module.state_dict().items()}
    other = tmp_path / "dora"
    shutil.copytree(adapter, other)
    config = json.loads((other / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    assert merge_plain_lora(module, other) is False
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in untouched.items())  # nothing changed
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"pip install 'udtc\[train\]'"):
        Classifier.from_pretrained(other, device="cpu")


def test_a_lora_on_a_loaded_adapter_refers_to_the_adapter_not_to_its_base(adapter, tmp_path):
    import shutil

    zero_shot = tmp_path / "zero-shot"  # an adapter shipped for zero-shot use (as udtc's default): no labels
    shutil.copytree(adapter, zero_shot)
    config = json.loads((zero_shot / "udtc_config.json").read_text())
    (zero_shot / "udtc_config.json").write_text(json.dumps({**config, "labels": None}))
    start = Classifier.from_pretrained(zero_shot, device="cpu")
    assert start.base_model == str(zero_shot)  # what loads these weights; its config's base lacks the adapter
    clf, _ = udtc.finetune(start, ROWS, output_dir=tmp_path / "again", method="lora", epochs=1, lora_dropout=0.0,
                           learning_rate=5e-2, progress=False)
    again = Classifier.from_pretrained(tmp_path / "again", device="cpu")
    torch.testing.assert_close(_scores(again), _scores(clf), atol=1e-5, rtol=0)
