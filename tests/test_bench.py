"""bench.py end to end with tiny sizes: every section runs and reports a speedup."""
import bench


def test_every_section_runs_and_reports():
    cfg = bench.Config(device="cpu", n_layer=1, n_head=2, n_embd=32, batch_size=4, seq_len=8, train_steps=2,
                       prompt_len=4, new_tokens=6, warmup=1, idl_batch=8, idl_limit=2)
    rows = bench.main(cfg)
    sections = [r[0] for r in rows]
    assert {"train", "generate", "idl"} <= set(sections)
    assert rows[sections.index("idl") + 2][2].endswith("x")  # the batching speedup row
