"""A WordPiece (or byte-level BPE) vocabulary trained from a corpus, and a fresh BERT (or
RoBERTa) to pretrain from scratch.

The vocabulary is learnt by the ``tokenizers`` library's WordPiece trainer (BERT's
normalizer and pre-tokenizer) and wrapped in transformers' ``BertTokenizer``, so the
saved folder loads with ``AutoTokenizer.from_pretrained``. ``taskbert vocab`` exposes it
on the command line.
"""

import hashlib
import json
import os

import click

from taskbert import DataError, SpecError, file_sha256, source_identity

from .text import read_documents

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts, vocab_size=30522, min_frequency=2, lowercase=True,
                    limit_alphabet=1000, model_max_length=512):
    """Train a BERT WordPiece tokenizer on an iterator of strings; return a
    transformers ``BertTokenizer`` (fast) whose vocabulary starts with the special tokens."""
    from tokenizers.implementations import BertWordPieceTokenizer
    from transformers import BertTokenizer

    trainer = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=None, clean_text=True,
                                     handle_chinese_chars=True)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                                limit_alphabet=limit_alphabet, special_tokens=SPECIAL_TOKENS,
                                show_progress=False)
    vocab = trainer.get_vocab()
    if len(vocab) <= len(SPECIAL_TOKENS):
        raise DataError("vocab: the corpus gave no word pieces; is it empty?")
    # BertTokenizer builds BERT's normalizer, pre-tokenizer and [CLS]/[SEP] template
    # around the learnt vocabulary, the same pipeline the trainer used
    return BertTokenizer(vocab=vocab, do_lower_case=lowercase, model_max_length=model_max_length)


def train_byte_level_bpe(texts, vocab_size=50265, min_frequency=2, lowercase=False, model_max_length=512):
    """Train a RoBERTa-style byte-level BPE tokenizer (``<s> a </s></s> b </s>``, every byte
    in the alphabet, so no text is unknown) on an iterator of strings; a transformers fast
    tokenizer whose vocabulary starts with ``<s> <pad> </s> <unk> <mask>``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    seen = [0]

    def counted():
        for text in texts:
            seen[0] += 1
            yield text

    tok.train_from_iterator(counted(), trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if not seen[0]:
        raise DataError("vocab: the corpus gave no text; is it empty?")
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")), trim_offsets=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token=AddedToken("<mask>", lstrip=True, special=True),
        model_max_length=model_max_length, model_input_names=["input_ids", "attention_mask"])


def record_lines(records, text_field="text", limit=None):
    """Yield the non-blank lines of each record's text (the first ``limit`` records when set):
    a ``documents`` record's ``text``, any other record's ``text_field``, as the task reads them."""
    for n, (_, record) in enumerate(records):
        if limit is not None and n >= limit:
            break
        text = record["text"] if "span" in record else record.get(text_field)
        if isinstance(text, str):   # the run's reading of data.train has refused other values
            yield from (line for line in text.splitlines() if line.strip())


def corpus_lines(paths, layout="auto", limit=None):
    """Yield the non-blank lines of the documents in ``paths`` (the first ``limit``
    documents of each file when set), streaming from disk."""
    for path in paths:
        yield from record_lines(read_documents(path, {"layout": layout}), limit=limit)


def vocab_folder(cache_dir, corpus, limit, scratch, reader_options):
    """Where a vocabulary for this corpus and these settings is kept (a content hash);
    ``corpus`` lists the SHA-256 of each text file, or what else names the text."""
    options = dict(reader_options)
    layout = options.pop("layout", "auto")
    key = json.dumps({"files": corpus, "limit": limit, "layout": layout,
                      "vocab_size": scratch.vocab_size, "min_frequency": scratch.min_frequency,
                      "lowercase": scratch.lowercase, "max_positions": scratch.max_positions,
                      **({"architecture": scratch.architecture} if scratch.architecture != "bert" else {}),
                      **({"reader_options": options} if options else {})},
                     sort_keys=True)
    return os.path.join(cache_dir, "vocab-" + hashlib.sha256(key.encode()).hexdigest()[:24])


def scratch_tokenizer(spec, cache_dir):
    """The tokenizer for a from-scratch run: ``encoder.tokenizer`` when the spec names one,
    else a vocabulary trained on ``data.train``, read by the reader the run reads it with
    (once; reused from ``cache_dir``)."""
    from transformers import AutoTokenizer

    from taskbert import check_tokenizer, choose_format, load_tokenizer, registries

    from .task import Pretraining

    if spec.encoder.tokenizer:
        return load_tokenizer(check_tokenizer(spec), spec.encoder)
    scratch, source = spec.options.scratch, spec.data.train
    readers = registries().readers
    fmt = choose_format(source, spec.data.format, Pretraining, readers)
    options, text_field = dict(spec.data.reader_options), spec.options.text_field
    # a text file by its hash alone, so vocabularies cached before keep their folder
    corpus = [file_sha256(source)] if fmt == "documents" else \
        [{"format": fmt, "text_field": text_field, **source_identity(source)}]
    limit = spec.data.limit.train
    folder = vocab_folder(cache_dir, corpus, limit, scratch, options)
    if not os.path.exists(os.path.join(folder, "tokenizer.json")):
        records = readers.get(fmt, where="data.format")(source, options)
        train = train_byte_level_bpe if scratch.architecture == "roberta" else train_wordpiece
        tokenizer = train(record_lines(records, text_field, limit), scratch.vocab_size,
                          scratch.min_frequency, scratch.lowercase, model_max_length=scratch.max_positions)
        from taskbert import new_temp_folder, swap_in

        tmp = new_temp_folder(folder)
        tokenizer.save_pretrained(tmp)
        swap_in(tmp, folder)
    return AutoTokenizer.from_pretrained(folder)


def scratch_encoder(spec, tokenizer):
    """A randomly initialised ``BertModel`` (or ``RobertaModel``: positions counted from after
    the pad id, one token type) of the size in ``task_options.scratch``."""
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    s = spec.options.scratch
    if spec.encoder.max_length > s.max_positions:
        raise SpecError(f"{spec.path}: encoder.max_length: {spec.encoder.max_length} exceeds "
                        f"task_options.scratch.max_positions {s.max_positions}; raise max_positions "
                        f"or lower max_length")
    sizes = dict(vocab_size=len(tokenizer), hidden_size=s.hidden, num_hidden_layers=s.layers,
                 num_attention_heads=s.heads, intermediate_size=s.intermediate or 4 * s.hidden,
                 hidden_dropout_prob=s.dropout, attention_probs_dropout_prob=s.dropout,
                 pad_token_id=tokenizer.pad_token_id)
    if s.architecture == "roberta":
        return RobertaModel(RobertaConfig(max_position_embeddings=s.max_positions + tokenizer.pad_token_id + 1,
                                          type_vocab_size=1, bos_token_id=tokenizer.bos_token_id,
                                          eos_token_id=tokenizer.eos_token_id, **sizes))
    return BertModel(BertConfig(max_position_embeddings=s.max_positions, type_vocab_size=2, **sizes))


@click.command("vocab")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="folder to write (AutoTokenizer.from_pretrained loads it)")
@click.option("--vocab-size", default=30522, show_default=True, type=click.IntRange(min=10))
@click.option("--min-frequency", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--cased", is_flag=True, help="keep case and accents (default: lowercase, as uncased BERT)")
@click.option("--layout", default="auto", show_default=True, type=click.Choice(["auto", "blank_line", "line"]),
              help="documents separated by blank lines, or one per line")
@click.option("--limit", type=click.IntRange(min=1), help="only the first N documents of each file")
@click.option("--kind", default="wordpiece", show_default=True, type=click.Choice(["wordpiece", "bpe"]),
              help="BERT's WordPiece, or RoBERTa's byte-level BPE (every byte known; cased unless --lowercase)")
@click.option("--lowercase", is_flag=True, help="with --kind bpe: lowercase the text first")
def vocab_command(files, output, vocab_size, min_frequency, cased, layout, limit, kind, lowercase):
    """Train a WordPiece (or byte-level BPE) vocabulary on text FILES and save a tokenizer folder."""
    from taskbert import friendly, new_temp_folder, swap_in

    @friendly
    def run():
        if os.path.isdir(output) and os.listdir(output) and \
                not os.path.exists(os.path.join(output, "tokenizer.json")):
            raise SpecError(f"--output: {output} holds other files; give a new folder "
                            f"(or a tokenizer folder to replace)")
        if kind == "bpe" and cased:
            raise SpecError("--cased: a byte-level BPE vocabulary is cased already; drop --cased "
                            "(--lowercase lowercases it)")
        texts = corpus_lines(files, layout, limit)
        tokenizer = (train_byte_level_bpe(texts, vocab_size, min_frequency, lowercase=lowercase) if kind == "bpe"
                     else train_wordpiece(texts, vocab_size, min_frequency, lowercase=not cased))
        tmp = new_temp_folder(output)
        tokenizer.save_pretrained(tmp)
        swap_in(tmp, output)
        click.echo(f"wrote a {len(tokenizer)}-token {'byte-level BPE' if kind == 'bpe' else 'WordPiece'} "
                   f"vocabulary to {output}")

    run()
