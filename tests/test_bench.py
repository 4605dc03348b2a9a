"""bench.py end to end with tiny sizes: every section runs and reports a speedup."""
import bench


def test_every_section_runs_and_reports():
    cfg = bench.Config(device="cpu", n_layer=1, n_head=2, n_embd=32, batch_size=4, seq_len=8, train_steps=2,
                       prompt_len=4, new_tokens=6, warmup=1, idl_batch=8, idl_limit=2)
    rows = bench.main(cfg)
    sections = [r[0] for r in rows]
    assert {"train", "generate", "idl", "bound"} <= set(sections)
    assert rows[sections.index("idl") + 2][2].endswith("x")  # the batching speedup row
    share = float(rows[sections.index("bound")][2].rstrip("%"))  # the matrix products' share
    assert 0 < share < 100 and rows[-1][2].endswith("x")         # ... and the cache's ceiling


def test_memory_section_truncation_and_checkpointing_keep_less_than_full_bptt():
    cfg = bench.Config(only="memory", device="cpu", n_layer=1, n_head=2, n_embd=32, prompt_len=4, idl_limit=3,
                       answer_tokens=3)
    rows = {r[1]: float(r[2].split()[0]) for r in bench.main(cfg)[1:]}   # measurement -> MiB kept
    full = [rows[f"idl_limit {k}, full BPTT"] for k in (1, 2, 3)]
    assert full[0] < full[1] < full[2]                                    # BPTT grows with every loop
    assert rows["idl_limit 3, truncated BPTT, last loop"] < full[2]
    assert rows["idl_limit 3, checkpointing"] < rows["idl_limit 3, truncated BPTT, last loop"]
    assert rows["idl_limit 1, truncated BPTT, last loop"] == full[0]      # one loop: nothing to cut


def test_train_section_compiles_every_model(monkeypatch):
    import torch
    compiled, real = [], torch.compile

    def compile_eagerly(model):           # dynamo traces the model; no inductor build in a test
        compiled.append(type(model).__name__)
        return real(model, backend="eager")
    monkeypatch.setattr(torch, "compile", compile_eagerly)
    cfg = bench.Config(only="train", device="cpu", n_layer=1, n_head=2, n_embd=32, batch_size=4,
                       seq_len=8, train_steps=1, warmup=1, compile=True)
    rows = bench.main(cfg)
    assert compiled == ["Lobe", "PlainGPT", "Lobe"] and rows[0][1].startswith("torch.compile")
    assert rows[3][2].endswith("x") and rows[-1][2].endswith("x") and "compiled" in rows[1][1]
