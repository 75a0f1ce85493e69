"""Encoders of a given shape for the benchmark (``--shape``): MiniLM's, BERT-base's and
BERT-large's, with random weights and the tokenizer of the model given, so a GPU gets work big
enough to fill it, and a machine without the packaged weights (a lent GPU) runs MiniLM's shape. Speed depends on the shape, not on the weights' values; the accuracy
of such a run says nothing (both sides start from the same random encoder)."""

import os

#: shape name -> BertConfig sizes (BERT-base and BERT-large, as Devlin et al. 2019 give them)
SHAPES = {
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}


def shaped_model(shape, tokenizer_path, out_dir, seed=0, sizes=None):
    """A model folder ``out_dir/shape-NAME`` of a random-initialised BERT of ``shape`` (or of
    ``sizes``, a dict of BertConfig sizes) with the tokenizer at ``tokenizer_path``; made once,
    then reused (the folder is complete or absent: written aside, then renamed)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from taskbert.io import new_temp_folder, swap_in

    folder = os.path.join(out_dir, f"shape-{shape}")
    if os.path.exists(os.path.join(folder, "config.json")):
        return folder
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512,
                        pad_token_id=tokenizer.pad_token_id or 0, **(sizes or SHAPES[shape]))
    torch.manual_seed(seed)
    tmp = new_temp_folder(folder)
    BertModel(config).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    swap_in(tmp, folder)
    return folder
