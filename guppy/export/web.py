"""`guppy export --web`: a static folder that chats with the model in the browser and shows its attention.

    runs/PERSONA/web/
        index.html, app.js, style.css     the page (guppy/export/playground/, package data)
        vendor/                           onnxruntime-web (WebAssembly), tokenizers.js, @huggingface/jinja:
                                          pinned in guppy/export/playground/vendor/package.json, copied from npm by
                                          guppy/export/playground/vendor/refresh.sh and shipped inside the package
        model.onnx, model.int8.onnx       `guppy export --onnx`'s graphs (fp32 and int8; the page picks one)
        tokenizer.json, tokenizer_config.json   the tokenizer and its chat template
        guppy.json                        shapes, special ids, the persona's name and description, chat defaults

Nothing is fetched from anywhere else, so the folder works offline from any static file server
(`guppy serve PERSONA`). No Python runs behind it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from guppy.config import CHAT
from guppy.export.onnx import FP32, INT8, write_folder
from guppy.model.checkpoint import load_model
from guppy.spec.personas import persona_name, persona_run, run_persona
from guppy.store.atomic import atomic_dir, check_output

WEB = Path(__file__).resolve().parent / "playground"
PAGE = ["index.html", "app.js", "style.css"]
VENDOR = ["ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm", "tokenizers.min.mjs", "jinja.mjs",
          "LICENSE.jinja", "LICENSE.tokenizers"]
# What the page downloads besides its model file (the licenses stay on disk).
LOADED = PAGE + ["guppy.json", "tokenizer.json", "tokenizer_config.json"] + [f"vendor/{f}" for f in VENDOR[:4]]


def export_web(*, persona: str, run: Path | None = None, out: Path | None = None, overwrite: bool = False) -> dict:
    """Write runs/PERSONA/web; return its guppy.json plus the page weight per model file."""
    name = persona_name(persona)
    paths = persona_run(name, run)
    out = Path(out) if out is not None else paths.web
    check_output(out, "web", overwrite=overwrite)  # before minutes of tracing
    missing = [f for f in VENDOR if not (WEB / "vendor" / f).is_file()]
    if missing:  # a broken install, not the user's input
        raise RuntimeError(f"{WEB / 'vendor'} lacks {', '.join(missing)}; run guppy/export/playground/vendor/refresh.sh")
    model, tokenizer, _ = load_model(paths.root)
    spec = run_persona(persona, paths)
    with atomic_dir(out, kind="web", overwrite=overwrite) as tmp:
        meta = write_folder(model, tokenizer, tmp, persona=name)
        for f in PAGE:
            shutil.copy(WEB / f, tmp / f)
        (tmp / "vendor").mkdir()
        for f in VENDOR:
            shutil.copy(WEB / "vendor" / f, tmp / "vendor" / f)
        meta["persona"] = {"name": name, "description": spec.identity.description if spec else "",
                           "user": spec.identity.user if spec else ""}
        meta["chat"] = CHAT.model_dump(include={"max_new_tokens", "temperature", "top_p"})
        meta["files"] = {"fp32": (tmp / FP32).stat().st_size, "int8": (tmp / INT8).stat().st_size}
        (tmp / "guppy.json").write_text(json.dumps(meta, indent=2) + "\n")
        page = sum((tmp / f).stat().st_size for f in LOADED)
    return {**meta, "persona": name, "out": str(out), "page_bytes": {k: page + v for k, v in meta["files"].items()}}
