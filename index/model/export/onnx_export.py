"""The ONNX export: the sentence-transformers weights traced offline to ONNX, fused, optionally quantised to
int8, and rewritten for onnxruntime's CPU kernels. It runs once per model fingerprint into the model cache
(`SEMSEARCH_MODEL_CACHE`), under a lock, written to a temporary name and renamed, so concurrent first uses and
interrupted exports are harmless. The runtime that runs the result is `semsearch.index.model.onnx_runtime`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from secrets import token_hex
from typing import Any

from semsearch.errors import ModelLoadError
from semsearch.index.model.export.graph import unfuse_skip_layer_norms

ONNX_BACKENDS = ("onnx-fp32", "onnx-int8")
# Backends whose activations are quantised at run time with one scale per call (onnxruntime's dynamic int8): a
# text's vector then depends on the other texts of its call (cosine down to 0.992 for short queries beside longer
# ones), so every call of theirs holds one text.
SCALED_PER_CALL = frozenset({"onnx-int8"})
OPSET = 17
# The recipe of the export (CHANGELOG.md says what each revision changed): a new recipe converts into a new
# folder, and an index whose vectors came from another revision takes writes only after a rebuild.
EXPORT_REVISION = 3
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def cached_model(model_path: str, fingerprint: str, backend: str, cache: Path) -> Path:
    """The ONNX file for this model and backend, exported into `cache` first if it is not there yet."""
    folder = cache / f"{fingerprint[:16]}-{backend}-r{EXPORT_REVISION}"
    target = folder / "model.onnx"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first export, then reuses it
        if not target.is_file():
            fused, unfused_norms = _export(model_path, folder, quantize=backend == "onnx-int8")
            (folder / "source.json").write_text(
                json.dumps(
                    {
                        "model": model_path,
                        "fingerprint": fingerprint,
                        "backend": backend,
                        "opset": OPSET,
                        "revision": EXPORT_REVISION,
                        "fused": fused,
                        "unfused_layer_norms": unfused_norms,
                    }
                )
            )
    return target


def scaled_per_call(onnx_file: Path) -> bool:
    """Whether the exported file at `onnx_file` quantises its activations per call (see SCALED_PER_CALL), from
    the `source.json` written beside it, or from its folder's name when that is missing."""
    try:
        backend = str(json.loads((onnx_file.parent / "source.json").read_text())["backend"])
    except (OSError, ValueError, KeyError, TypeError):
        backend = next((b for b in ONNX_BACKENDS if f"-{b}-r" in onnx_file.parent.name), "")
    return backend in SCALED_PER_CALL


def _export(model_path: str, folder: Path, quantize: bool) -> tuple[bool, int]:
    """Trace the transformer to ONNX (dynamic batch and sequence axes), fuse its operators where onnxruntime
    can, quantise its weights to int8, then spell the fused layer norms out again (their kernel is slow); whether
    it was fused, and how many layer norms were spelled out."""
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    staging = folder / f"tmp-{token_hex(4)}"
    staging.mkdir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        model = AutoModel.from_pretrained(model_path, local_files_only=True, attn_implementation="eager").eval()
        example = tokenizer(["a short example", "another, somewhat longer example"], padding=True, return_tensors="pt")
        names = [n for n in _INPUTS if n in example]
        axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
        fp32 = staging / "model.fp32.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on the legacy exporter and on shape checks
            torch.onnx.export(
                _last_hidden_state(model, names),
                tuple(example[n] for n in names),
                str(fp32),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        result = _fuse(fp32, staging / "model.fused.onnx", model.config)
        fused = result != fp32
        if quantize:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # Per-channel int8 weights: per-tensor scales lose too much of this model's accuracy.
            source, result = result, staging / "model.int8.onnx"
            logging.disable(logging.WARNING)  # its advice to pre-process; that step fails on this graph
            handlers = list(logging.root.handlers)  # one of its modules calls logging.basicConfig on import
            try:
                quantize_dynamic(
                    str(source),
                    str(result),
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    # The fused operators are not in ONNX's shape inference: their outputs are float.
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            finally:
                logging.disable(logging.NOTSET)
                logging.root.handlers[:] = handlers
        result, unfused_norms = _unfuse_norms(result, staging / "model.final.onnx")
        os.replace(result, folder / "model.onnx")
        return fused, unfused_norms
    except Exception as exc:
        raise ModelLoadError(f"Could not convert the model at {model_path} to ONNX: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fuse(source: Path, target: Path, config: Any) -> Path:
    """onnxruntime's transformer fusions for a BERT model: attention, skip + layer norm, bias + GELU and the
    embedding layer norm each become one operator, so a short query runs far fewer operators. Any other
    model, or a graph they do not match, stays as exported."""
    if getattr(config, "model_type", None) != "bert":
        return source
    try:
        from onnxruntime.transformers import optimizer

        fused = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
        )
        if not fused.get_fused_operator_statistics().get("Attention"):
            return source
        fused.save_model_to_file(str(target))
    except Exception as exc:  # the fusions are an optimisation: the plain graph is still right
        logging.getLogger(__name__).warning("transformer fusions skipped for %s: %s", source, exc)
        return source
    return target


def _unfuse_norms(source: Path, target: Path) -> tuple[Path, int]:
    """The graph with its fused skip + layer norms spelled out (`graph`), and how many; like the
    fusions, an optimisation: if it fails, the fused graph is still right."""
    try:
        count = unfuse_skip_layer_norms(source, target)
    except Exception as exc:
        logging.getLogger(__name__).warning("layer norms left fused in %s: %s", source, exc)
        return source, 0
    return (target, count) if count else (source, 0)


def _last_hidden_state(model: Any, names: Sequence[str]) -> Any:
    """A module around `model` whose one output is the token embeddings (torch is imported only to export)."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    return LastHiddenState()


def check_exportable(model_path: str) -> str | None:
    """Why this model folder cannot run on the ONNX backend (it must be transformer -> mean pooling ->
    normalise), or None when it can."""
    root = Path(model_path)
    try:
        modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((root / "modules.json").read_text())]
        pooling = json.loads((root / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"cannot read its modules.json or pooling config ({exc})"
    if modules != ["Transformer", "Pooling", "Normalize"]:
        return f"its modules are {modules}, not Transformer, Pooling, Normalize"
    if not pooling.get("pooling_mode_mean_tokens") or any(
        pooling.get(k)
        for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
    ):
        return "it does not pool by the mean of its tokens"
    if not (root / "tokenizer.json").is_file():
        return "it has no tokenizer.json"
    return None
