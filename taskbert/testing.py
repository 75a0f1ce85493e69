"""Fixtures for plugin authors and for taskbert's own tests.

* ``make_tiny_encoder(folder, words)``: a randomly initialised BERT of a few thousand
  parameters and a WordPiece tokenizer over ``words``, saved as a model folder any spec
  can name in ``encoder.model`` — no network, trains in seconds on a CPU.
* ``run_spec(spec_dict, folder)``: write a spec into ``folder`` and run it, returning the
  final metrics and the run folder.
"""

import os

import yaml

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizer(words, folder=None, lowercase=True):
    """A BERT WordPiece fast tokenizer whose vocabulary is the special tokens, the
    characters of ``words`` (as pieces and ``##`` continuations) and the words."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = list(SPECIAL)
    chars = sorted({c for w in words for c in (w.lower() if lowercase else w)})
    for piece in chars + ["##" + c for c in chars] + [w.lower() if lowercase else w for w in words]:
        if piece not in vocab:
            vocab.append(piece)
    ids = {tok: i for i, tok in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    if folder:
        fast.save_pretrained(folder)
    return fast


def make_tiny_encoder(folder, words, hidden=32, layers=2, heads=2, max_positions=128, seed=0):
    """Save a tiny random BERT and its tokenizer in ``folder``; return the folder."""
    import torch
    from transformers import BertConfig, BertModel

    os.makedirs(folder, exist_ok=True)
    tokenizer = make_tokenizer(words, folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2,
                        max_position_embeddings=max_positions, type_vocab_size=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(folder)
    return folder


def run_spec(spec, folder, name="spec.yaml", overrides=(), overwrite=True):
    """Write ``spec`` (a dict) to ``folder/name``, run it, return (metrics, run folder)."""
    from .run import execute
    from .spec import load_spec

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(spec, fh, sort_keys=False)
    loaded = load_spec(path, overrides)
    metrics = execute(loaded, overwrite=overwrite)
    return metrics, loaded.output
