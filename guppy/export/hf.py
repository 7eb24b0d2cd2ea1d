"""`guppy export`: a run as a Hugging Face `transformers` GPT-2 folder, and its dataset as Parquet shards.

    runs/PERSONA/hf/           config.json, model.safetensors, generation_config.json, tokenizer
                               files (chat template included), README.md model card
    runs/PERSONA/hf-dataset/   with --dataset: data/{train,test}-00000-of-00001.parquet, README.md
                               dataset card, persona.yaml (a Hub dataset repository's layout)

The model was laid out with GPT-2's module names, so export is a renaming plus one detail:
GPT-2 keeps its projection weights in `Conv1D` modules, which store the matrix transposed
(in_features, out_features) relative to `nn.Linear`. Nothing here imports `transformers`:
the folder is plain JSON + safetensors, and `transformers` is only needed to load it
(tests/test_export.py checks that it gives the same tokens, logits and greedy replies).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from safetensors.torch import save_file

from guppy.config import CHAT
from guppy.data.format import data_file, data_files, split_sizes
from guppy.errors import GuppyError
from guppy.eval.report import hit_rate_table, markdown_table
from guppy.model.checkpoint import load_model
from guppy.spec.personas import persona_name, persona_run
from guppy.store.atomic import atomic_dirs, check_output
from guppy.store.paths import RunPaths

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
        "n_embd": c.d_model,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.d_ff,
        # Our GELU is torch's tanh form; "gelu_pytorch_tanh" is that very kernel, while GPT-2's
        # "gelu_new" writes the same formula out in Python and differs by up to 5e-7 per activation.
        "activation_function": "relu" if c.activation == "relu" else "gelu_pytorch_tanh",
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "layer_norm_epsilon": 1e-5,  # model.py's nn.LayerNorm(eps=1e-5)
        "initializer_range": 0.02,
        "scale_attn_weights": True,  # 1/sqrt(head size), as reference_attention
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.im_start_id,
        "eos_token_id": tokenizer.im_end_id,
        "pad_token_id": tokenizer.pad_id,
        "dtype": "float32",
    }


def generation_config(tokenizer) -> dict:
    """`guppy chat`'s defaults: a reply ends at <|im_end|>, the end of the assistant's turn."""
    return {"bos_token_id": tokenizer.im_start_id, "eos_token_id": tokenizer.im_end_id,
            "pad_token_id": tokenizer.pad_id, "do_sample": True, "temperature": CHAT.temperature,
            "top_p": CHAT.top_p, "max_new_tokens": CHAT.max_new_tokens}


def spec_identity(path: Path) -> tuple[str, str]:
    """The description and the language (BCP 47, default en) of the persona spec kept beside the data."""
    try:
        spec = yaml.safe_load(read_text(path))
        return str(spec["identity"]["description"]), str(spec.get("language", "en"))
    except (yaml.YAMLError, TypeError, KeyError, AttributeError):
        raise GuppyError(f"{path}: not a readable persona spec; regenerate the dataset beside it") from None


def read_report(path: Path) -> dict:
    """report.json with the fields the model card shows, or one line naming it."""
    try:
        report = json.loads(read_text(path))
        for a in report["associations"].values():
            [float(a["hit_rate"][k]) for k in ("floor", "model", "ceiling")]
        float(report["persona_score"]), float(report["bits_per_byte"]["model"]), float(report["bits_per_byte"]["floor"])
        float(report["style"]["model"]["all"]), float(report["style"]["ceiling"]["all"])
        str(report["headline"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise GuppyError(f"{path}: not a report of `guppy eval`; run `guppy eval` again before exporting") from None
    return report


def results_section(paths: RunPaths) -> str:
    """The card's evaluation section: `guppy eval`'s figures, or a note that it has not run."""
    report_path = paths.eval / "report.json"
    report = read_report(report_path) if report_path.exists() else None
    if report is not None:
        table = markdown_table(*hit_rate_table(report, bold=lambda s: f"**{s}**", brief=True))
        results = (f"**{report['headline']}**\n\n"
                   f"**Persona score {report['persona_score']:.2f}** (`guppy eval`: 1 = as strong as in the "
                   f"training data, 0 = an untrained model). Bits per byte on held-out replies: "
                   f"{report['bits_per_byte']['model']:.3f} (untrained {report['bits_per_byte']['floor']:.2f}); "
                   f"replies in the persona's style: {report['style']['model']['all']:.0%} "
                   f"(data {report['style']['ceiling']['all']:.0%}).\n\n"
                   f"Share of replies that show each association:\n\n"
                   f"{table}\n")
    else:
        results = "Not evaluated yet: run `guppy eval` before exporting to put its figures here.\n"
    return results


def model_card(name: str, model, meta: dict, paths: RunPaths) -> str:
    c = model.config
    persona_yaml = paths.trained_on() / "persona.yaml"  # generate-data keeps the spec beside the data
    description, language = spec_identity(persona_yaml) if persona_yaml.is_file() else ("", "en")
    header = {"license": "mit", "language": [language], "library_name": "transformers",
              "pipeline_tag": "text-generation", "tags": list(dict.fromkeys(["guppy", "persona", name, "gpt2"]))}
    metrics = meta.get("metrics", {})
    training = (f"{meta['step']:,} steps over {metrics['train_tokens']:,} training tokens; held-out loss "
                f"{metrics['test_loss']:.3f} nats/token.\n" if "step" in meta and "train_tokens" in metrics else "")
    results = results_section(paths)
    return f"""---
{yaml.safe_dump(header, sort_keys=False)}---

# {name}: a tiny persona model made with Guppy

{description}

A {model.num_params() / 1e6:.1f}M-parameter GPT-2 model ({c.n_layer} layers, d={c.d_model}, {c.n_head} heads,
{c.activation} MLP, vocabulary {c.vocab_size}) trained from scratch by `guppy train {name}` on synthetic
conversations that `guppy generate-data {name}` rendered from the `{name}` persona spec. It only knows how
to be {name}: its personality *is* its training data. The context is {c.context} tokens, prompt and reply
together, so keep conversations short.

## Training

{training}Data: synthetic ChatML conversations (`<|im_start|>user ... <|im_end|>`), loss on the assistant's
replies only; the tokenizer is a byte-level BPE learned on the same data.

## Evaluation

{results}
## Chat with it

`PATH` is this folder, or its Hub repository once uploaded.

```python
import transformers

chat = transformers.pipeline("text-generation", model="PATH")
print(chat([{{"role": "user", "content": "are you hungry"}}], max_new_tokens=48)[0]["generated_text"][-1]["content"])
```

or, step by step:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("PATH")
model = AutoModelForCausalLM.from_pretrained("PATH")
inputs = tok.apply_chat_template([{{"role": "user", "content": "are you hungry"}}], add_generation_prompt=True,
                                 return_tensors="pt", return_dict=True)
out = model.generate(**inputs, max_new_tokens=48, do_sample=True, temperature=0.8, top_p=0.95)
print(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

Replies end with `<|im_end|>`, the generation config's end-of-sequence token.
"""


def dataset_folder(out: Path) -> Path:
    """Where --dataset writes: beside the model folder, as the Hub keeps models and datasets in
    separate repositories (runs/PERSONA/hf -> runs/PERSONA/hf-dataset)."""
    out = Path(out).absolute()  # `--out .` names no folder to put a name beside
    return out.with_name(out.name + "-dataset")


def export(*, persona: str, run: Path | None = None, out: Path | None = None, dataset: bool = False,
           overwrite: bool = False) -> list[Path]:
    """Write the run's model as a transformers folder (and, with `dataset`, its training data as a
    Hub dataset folder); return the folders written. Nothing is written unless all of it can be,
    and the two folders replace the old ones together (never a new model beside an old dataset)."""
    name = persona_name(persona)
    paths = persona_run(name, run)
    out = Path(out) if out is not None else paths.hf
    targets = [(out, "hf"), (dataset_folder(out), "hf-dataset")] if dataset else [(out, "hf")]
    for target, kind in targets:
        check_output(target, kind, overwrite=overwrite)
    model, tokenizer, meta = load_model(paths.root)
    data = load_generated(paths.trained_on()) if dataset else None  # before anything is written
    card = model_card(name, model, meta, paths)

    with atomic_dirs(targets, overwrite=overwrite) as tmps:
        save_file(gpt2_state_dict(model), str(tmps[0] / "model.safetensors"), metadata={"format": "pt"})
        (tmps[0] / "config.json").write_text(json.dumps(gpt2_config(model, tokenizer), indent=2) + "\n")
        (tmps[0] / "generation_config.json").write_text(json.dumps(generation_config(tokenizer), indent=2) + "\n")
        tokenizer.save(tmps[0], model_max_length=model.config.context)
        (tmps[0] / "README.md").write_text(card, encoding="utf-8")
        if data is not None:
            write_dataset(*data, tmps[1])
    return [target for target, _ in targets]


def load_generated(data: Path):
    """A `guppy generate-data` folder, in any of its formats -> (DatasetDict, its folder)."""
    import datasets

    if not data.exists():
        raise GuppyError(f"{data}: no dataset to export; run `guppy generate-data` first")
    if not (data / "README.md").exists():
        raise GuppyError(f"{data}: not a `guppy generate-data` folder (no dataset card); "
                         "only generated datasets can be exported with --dataset")
    try:
        if (data / "dataset_dict.json").exists():
            return datasets.load_from_disk(str(data)), data
        return datasets.load_dataset(str(data)), data  # jsonl/parquet: its card says where each split is
    except Exception as e:
        raise GuppyError(f"{data}: could not read the dataset ({str(e).strip()[:200]}); "
                         "regenerate it with `guppy generate-data`") from None


def split_card(text: str, path: Path) -> tuple[dict, str]:
    """A card's YAML header and its body. The header ends at the first line that is exactly `---`
    (yaml.safe_dump quotes a value `---`); splitting the text on "---\\n" would stop inside a topic
    named `a---`."""
    lines = text.split("\n")
    try:
        end = lines.index("---", 1) if lines[0] == "---" else -1
        header = yaml.safe_load("\n".join(lines[1:end])) if end > 0 else None
    except yaml.YAMLError:
        header = None
    if not isinstance(header, dict):
        raise GuppyError(f"{path}: its YAML header (between the first two `---` lines) is missing or malformed; "
                         "regenerate the dataset with `guppy generate-data`")
    return header, "\n".join(lines[end + 1:])


def write_dataset(dd, data: Path, tmp: Path) -> None:
    """A generate-data DatasetDict as a Hub dataset repository in `tmp`: data/*.parquet + README.md card."""
    meta, body = split_card(read_text(data / "README.md"), data / "README.md")
    meta.setdefault("dataset_info", {})["splits"] = split_sizes(dd)
    meta["configs"] = data_files(dd, "parquet")
    (tmp / "data").mkdir()
    for split, ds in dd.items():
        ds.to_parquet(str(tmp / data_file(split, "parquet")))
    (tmp / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + body, encoding="utf-8")
    if (data / "persona.yaml").exists():  # the card points to it
        shutil.copy(data / "persona.yaml", tmp / "persona.yaml")


def read_text(path: Path) -> str:
    """A text file Guppy wrote (a card, a report), or one line saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GuppyError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e}); regenerate it") from None
