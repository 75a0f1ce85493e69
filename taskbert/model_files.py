"""Does a saved encoder folder match itself? Checked from its files, no weights loaded.

``check_model_folder`` compares ``config.json`` with the weights' safetensors headers (tensor
names and shapes: the 8-byte header length and the JSON header, never the tensors) and with
the tokenizer's vocabulary size, so a folder whose parts come from different models is one
line before anything loads, not a 60-line size-mismatch traceback or, worse, a model that
loads none of its weights and trains from random ones. Nothing here imports transformers
(``taskbert validate`` stays fast). Weights kept only as ``pytorch_model.bin`` have no header
to read: their shapes are not checked.
"""

import json
import os
import re
import struct

from .errors import SpecError

#: config keys that give the width of the input embedding, by architecture
#: (ALBERT and ELECTRA factorise it as ``embedding_size``; DistilBERT calls it ``dim``)
WIDTH_KEYS = ("embedding_size", "hidden_size", "dim", "d_model", "n_embd")


def _norm(name):
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def safetensors_shapes(folder):
    """``{tensor name: shape}`` from the headers of ``folder``'s safetensors weights (one file
    or shards listed by ``model.safetensors.index.json``); None when the folder has none."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as fh:
            files = sorted(set(json.load(fh).get("weight_map", {}).values()))
    elif os.path.isfile(os.path.join(folder, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        return None
    shapes = {}
    for name in files:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size)) if size < 100_000_000 else None
        except (OSError, ValueError, struct.error):
            header = None
        if not isinstance(header, dict):   # unreadable: loading says why, in its own line
            return None
        shapes.update({k: v.get("shape") for k, v in header.items()
                       if k != "__metadata__" and isinstance(v, dict)})
    return shapes


def tokenizer_size(folder):
    """One more than the largest token id of the tokenizer saved in ``folder`` (from
    ``tokenizer.json``, else ``vocab.txt`` or ``vocab.json``); None when it cannot tell
    (a SentencePiece model alone, or a file it cannot read)."""
    try:
        if os.path.isfile(os.path.join(folder, "tokenizer.json")):
            with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as fh:
                doc = json.load(fh)
            vocab = (doc.get("model") or {}).get("vocab")
            ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab or [])))
            ids += [t.get("id", -1) for t in doc.get("added_tokens") or []]
            return max(ids) + 1 if ids else None
        if os.path.isfile(os.path.join(folder, "vocab.txt")):
            with open(os.path.join(folder, "vocab.txt"), encoding="utf-8") as fh:
                return sum(1 for _ in fh)
        if os.path.isfile(os.path.join(folder, "vocab.json")):
            with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as fh:
                return max(json.load(fh).values()) + 1
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return None


def check_model_folder(folder, cfg, tokenizer_folder=None):
    """Raise SpecError (one line) when ``config.json`` (``cfg``, its dict) names another
    architecture than the class that saved the weights, when the weights hold no embedding
    matrix of the config's ``vocab_size`` x width, or when the tokenizer has more tokens than
    those embedding rows. Without safetensors weights only the tokenizer is checked."""
    cfg_file = os.path.join(folder, "config.json")
    shapes = safetensors_shapes(folder)
    model_type, names = _norm(cfg.get("model_type") or ""), cfg.get("architectures") or []
    # The class that saved the weights names the architecture, unless the weights sit under
    # model_type's own prefix (taskbert saves ALBERT with BERT's head class name, "albert.*"
    # keys); a model with its own code (auto_map) may call its classes anything.
    if (model_type and names and shapes and "auto_map" not in cfg
            and not any(_norm(n).startswith(model_type) for n in names)
            and model_type not in {_norm(k.split(".", 1)[0]) for k in shapes}):
        raise SpecError(f"encoder.model: {cfg_file} says model_type {cfg['model_type']!r} but its architectures "
                        f"name {', '.join(map(str, names))}, the class that saved the weights; the config "
                        f"and the weights must come from one model (fix model_type or the folder)")
    rows = cfg.get("vocab_size")
    widths = {cfg[k] for k in WIDTH_KEYS if isinstance(cfg.get(k), int)}
    embedding = [[rows, w] for w in widths]
    if shapes and isinstance(rows, int) and widths and not any(s in embedding for s in shapes.values()):
        embeds = sorted(((s, k) for k, s in shapes.items() if "embed" in k.lower() and len(s or ()) == 2
                         and not re.search("position|type", k)), reverse=True)   # the word embedding
        found = f" ({embeds[0][1]} is {embeds[0][0]})" if embeds else ""
        raise SpecError(f"encoder.model: {folder}: config.json says vocab_size {rows} and width "
                        f"{' or '.join(map(str, sorted(widths)))}, but the weights hold no embedding matrix of "
                        f"that shape{found}; the config and the weights must come from one model")
    size = tokenizer_size(tokenizer_folder) if tokenizer_folder and isinstance(rows, int) else None
    if size is not None and size > rows:
        key = "encoder.model" if tokenizer_folder == folder else "encoder.tokenizer"
        raise SpecError(f"{key}: {tokenizer_folder}: its tokenizer has {size} tokens but the model's embeddings "
                        f"hold {rows} (config.json vocab_size); ids from {rows} on have no embedding: use "
                        f"the tokenizer the model was trained with")
