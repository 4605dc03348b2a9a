"""evaluate.py end to end on tiny checkpoints: every system, with and without the equal-size GPT."""
import pytest
import torch

import evaluate
from common import UsageError
from lobes import Lobe, LobeConfig
from sln import System, save_system


def test_every_system_is_evaluated_on_test_and_ood(tmp_path):
    torch.manual_seed(0)
    cfg = LobeConfig(n_layer=1, n_head=2, n_embd=32)
    save_system(str(tmp_path / "pair.pt"), System("F", Lobe(cfg), Lobe(cfg)), task="addition")
    save_system(str(tmp_path / "one.pt"), System("A", Lobe(LobeConfig(n_layer=2, n_head=2, n_embd=32))))
    r = evaluate.main(evaluate.Config(ckpt=str(tmp_path / "pair.pt"), ckpt_equal=str(tmp_path / "one.pt"),
                                      n_eval=6, idl_limit=2, device="cpu"))
    assert set(r) == {"A", "B", "C", "D", "F", "A="}
    for name, splits in r.items():
        assert set(splits) == {"test", "ood"} and all(0 <= s["acc"] <= 1 for s in splits.values())
        assert all(1 <= s["loops"] <= (1 if name.startswith("A") else 2) for s in splits.values())
    with pytest.raises(UsageError):
        evaluate.main(evaluate.Config(ckpt=str(tmp_path / "pair.pt"), systems="A,Z", device="cpu"))
