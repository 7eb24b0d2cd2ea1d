"""`guppy export`: a run as a Hugging Face `transformers` GPT-2 folder, and its dataset as Parquet shards.

The model was laid out with GPT-2's module names, so export is a renaming plus one detail:
GPT-2 keeps its projection weights in `Conv1D` modules, which store the matrix transposed
(in_features, out_features) relative to `nn.Linear`. Nothing here imports `transformers`:
the folder is plain JSON + safetensors, and `transformers` is only needed to load it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from safetensors.torch import save_file

from guppy.atomic import atomic_dir
from guppy.checkpoint import load_model
from guppy.errors import GuppyError
from guppy.paths import RunPaths

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gpt2_state_dict(model) -> dict:
    """Our weights under GPT2LMHeadModel's names; the tied lm_head is left out (HF re-ties it)."""
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        tensor = tensor.detach().float().cpu()
        out[name] = (tensor.t() if name.endswith(CONV1D) else tensor).contiguous()
    return out


def gpt2_config(model, tokenizer) -> dict:
    c = model.config
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.context,
        "n_ctx": c.context,
        "n_embd": c.d_model,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.d_ff,
        "activation_function": "relu" if c.activation == "relu" else "gelu_new",
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.im_start_id,
        "eos_token_id": tokenizer.im_end_id,
        "pad_token_id": tokenizer.pad_id,
        "torch_dtype": "float32",
    }


def generation_config(tokenizer) -> dict:
    return {"bos_token_id": tokenizer.im_start_id, "eos_token_id": tokenizer.im_end_id,
            "pad_token_id": tokenizer.pad_id, "do_sample": True, "temperature": 0.8, "top_p": 0.95,
            "max_new_tokens": 64}


def model_card(persona: str, model, paths: RunPaths) -> str:
    header = {"license": "mit", "language": ["en"], "library_name": "transformers",
              "pipeline_tag": "text-generation", "tags": ["guppy", "persona", "gpt2", "tiny"]}
    report_path = paths.eval / "report.json"
    if report_path.exists():
        report = json.loads(report_path.read_text())
        scores = "\n".join(f"| {n} | {a['hit_rate']['model']:.0%} | {a['hit_rate']['ceiling']:.0%} |"
                           for n, a in report["associations"].items())
        results = (f"**Persona score {report['persona_score']:.2f}** (`guppy eval`; 1 = as strong as in the "
                   f"training data, 0 = an untrained model).\n\n| association | model | data |\n|---|---|---|\n{scores}\n")
    else:
        results = "Not evaluated yet: run `guppy eval` before exporting to put its figures here.\n"
    return f"""---
{yaml.safe_dump(header, sort_keys=False)}---

# {persona}: a tiny persona model made with Guppy

A {model.num_params() / 1e6:.1f}M-parameter GPT-2-style model ({model.config.n_layer} layers,
d={model.config.d_model}, {model.config.n_head} heads, context {model.config.context}) trained from scratch by
`guppy train {persona}` on synthetic conversations generated from the `{persona}` persona spec.
It only knows how to be {persona}: its personality *is* its training data.

## Evaluation

{results}
## Chat with it

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("PATH")
model = AutoModelForCausalLM.from_pretrained("PATH")
ids = tok.apply_chat_template([{{"role": "user", "content": "what is the meaning of life"}}],
                              add_generation_prompt=True, return_tensors="pt")
out = model.generate(ids, max_new_tokens=48, do_sample=True, temperature=0.8, top_p=0.95)
print(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
```
"""


def export_model(*, persona: str, run: Path | None = None, out: Path | None = None, overwrite: bool = False,
                 dataset: bool = False) -> Path:
    paths = RunPaths.for_persona(persona, run)
    out = Path(out) if out is not None else paths.hf
    if out.exists() and not overwrite:
        raise GuppyError(f"{out}: already exists; pass --overwrite to replace it")
    model, tokenizer, _ = load_model(paths.root)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_file(gpt2_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(gpt2_config(model, tokenizer), indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(generation_config(tokenizer), indent=2) + "\n")
        tokenizer.save(tmp)
        (tmp / "README.md").write_text(model_card(persona, model, paths))
        if dataset:
            export_dataset(paths.data, tmp / "dataset")
    return out


def export_dataset(data: Path, out: Path) -> None:
    """The generate-data folder as a Hub dataset repository: data/*.parquet + README.md card."""
    from datasets import load_from_disk

    if not (data / "dataset_dict.json").exists():
        raise GuppyError(f"{data}: no generate-data dataset to export (run `guppy generate-data` first)")
    dd = load_from_disk(str(data))
    (out / "data").mkdir(parents=True)
    for split, ds in dd.items():
        ds.to_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))
    card = (data / "README.md").read_text()
    _, header, body = card.split("---\n", 2)
    meta = yaml.safe_load(header)
    meta["configs"] = [{"config_name": "default",
                        "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in dd]}]
    (out / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + body)
    if (data / "persona.yaml").exists():
        shutil.copy(data / "persona.yaml", out / "persona.yaml")
