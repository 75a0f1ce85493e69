"""The bad-input suite as one table.

Every case is a spec (the base spec below, changed) plus data files that must make
``taskbert run`` exit with code 2 and print one line naming the file and line or the key,
the bad value and what is allowed, with no traceback and nothing written to the run folder.
``expect`` holds the parts of that line the test looks for, in the order where / the bad
value / what is allowed (``{dir}`` is the case's folder).

``python tests/bad_inputs/bad_input_cases.py`` prints the table of docs/reliability.md; a test
checks that docs/reliability.md holds exactly that table.
"""

from dataclasses import dataclass, field

DROP = "<drop this key>"

#: the spec every case starts from (``train.jsonl``/``dev.jsonl`` are written by the test;
#: ``{encoder}`` is the tiny test encoder)
BASE = {
    "task": "sentence_classification",
    "encoder": {"model": "{encoder}", "max_length": 32},
    "data": {"train": "train.jsonl", "validation": "dev.jsonl"},
    "train": {"epochs": 1, "batch_size": 8, "loggers": []},
    "output": "run",
}

CONLL_OK = "Alice\tB-person\nwent\tO\n\nBob\tB-person\nsmiled\tO\n"
#: the default window sizes need a longer max_length than the base spec's 32
QA_OPTIONS = {"max_question_tokens": 8, "window_overlap_tokens": 4}
QA_OK = ('{"id": "q1", "question": "who went?", "context": "alice went to paris", '
         '"answers": {"text": ["alice"], "answer_start": [0]}}\n')


@dataclass(frozen=True)
class Case:
    """One bad input and the parts of the one-line error it must give."""

    name: str                      # test id
    group: str                     # spec, data, encoder, output or resume
    what: str                      # the bad input, for the docs table
    expect: tuple                  # substrings of the error line
    spec: dict = field(default_factory=dict)   # deep-merged into BASE (DROP deletes)
    spec_text: object = None       # the whole spec file (str or bytes) instead of BASE
    files: dict = field(default_factory=dict)  # name -> content, written beside the spec
    args: tuple = ()               # more command-line arguments
    setup: str = None              # a special preparation (see test_bad_inputs.SETUPS)
    task: str = None               # a task plugin the case needs


def jsonl(*records):
    """Lines of JSON text."""
    import json

    return "".join(json.dumps(r) + "\n" for r in records)


GOOD = jsonl({"text": "great film", "label": "pos"}, {"text": "awful plot", "label": "neg"})

CASES = [
    # ------------------------------------------------------------------ the spec file
    Case("yaml-malformed", "spec", "malformed YAML (bad indentation)",
         ("spec.yaml: line 4, column 2", "malformed YAML", "expected <block end>"),
         spec_text="task: sentence_classification\ntrain:\n  lr: 1\n bad: 2\n"),
    Case("yaml-python-tag", "spec", "YAML tag that would build a Python object",
         ("spec.yaml: line 1, column 7", "python/object/apply:os.system", "malformed YAML"),
         spec_text="task: !!python/object/apply:os.system ['echo hi']\n"),
    Case("spec-not-utf8", "spec", "spec file in Latin-1, not UTF-8",
         ("spec.yaml", "not UTF-8 text (byte 41)", "save the spec as UTF-8"),
         spec_text="task: sentence_classification\noutput: caf\xe9\n".encode("latin-1")),
    Case("spec-empty", "spec", "empty spec file",
         ("spec.yaml", "the spec is empty", "at least 'task:'"), spec_text=""),
    Case("spec-list", "spec", "spec whose top level is a list",
         ("spec.yaml", "got list", "top level must be a mapping"), spec_text="- a\n- b\n"),
    Case("spec-missing", "spec", "spec file that does not exist",
         ("nowhere.yaml", "spec file not found"), setup="missing_spec"),
    Case("yaml-duplicate-key", "spec", "a key given twice in the spec",
         ("spec.yaml: line 3", "key 'task' appears twice (lines 1 and 3)", "keep one"),
         spec_text="task: sentence_classification\noutput: run\ntask: token_classification\n"),
    Case("unknown-key", "spec", "misspelt top-level key",
         ("spec.yaml", "unknown key 'trian'", "did you mean 'train'?", "allowed: task, tasks, encoder, data"),
         spec={"trian": {}}),
    Case("unknown-nested-key", "spec", "misspelt key inside a section",
         ("spec.yaml", "unknown key 'train.lrr'", "did you mean 'lr'?", "allowed: epochs"),
         spec={"train": {"lrr": 0.1}}),
    Case("unknown-task", "spec", "misspelt task name",
         ("spec.yaml: task", "'sentence_classificaton'", "did you mean 'sentence_classification'?"),
         spec={"task": "sentence_classificaton"}),
    Case("missing-task", "spec", "no task at all",
         ("spec.yaml", "missing required key 'task'"), spec={"task": DROP}),
    Case("wrong-type", "spec", "a word where a number belongs",
         ("spec.yaml", "train.epochs", "got 'many'", "expected a number"),
         spec={"train": {"epochs": "many"}}),
    Case("batch-size-0", "spec", "train.batch_size: 0",
         ("spec.yaml", "train.batch_size", "0 is out of range", "must be >= 1"),
         spec={"train": {"batch_size": 0}}),
    Case("negative-lr", "spec", "negative learning rate",
         ("spec.yaml", "train.lr", "-0.001 is out of range", "must be > 0"),
         spec={"train": {"lr": -0.001}}),
    Case("bad-choice", "spec", "a value outside a fixed set",
         ("spec.yaml", "train.precision", "'fp8' is not allowed", "'fp32'"),
         spec={"train": {"precision": "fp8"}}),
    Case("eval-every", "spec", "train.eval_every neither a number nor 'epoch'",
         ("spec.yaml", "train.eval_every", "'sometimes'", "'epoch'"),
         spec={"train": {"eval_every": "sometimes"}}),
    Case("limit-0", "spec", "data.limit.train: 0",
         ("spec.yaml", "data.limit.train", "0 is out of range", "must be >= 1"),
         spec={"data": {"limit": {"train": 0}}}),
    Case("max-length-small", "spec", "encoder.max_length below 8",
         ("spec.yaml", "encoder.max_length", "4 is out of range", "must be >= 8"),
         spec={"encoder": {"max_length": 4}}),
    Case("unknown-task-option", "spec", "misspelt task option",
         ("spec.yaml", "unknown key 'task_options.text_feild'", "did you mean 'text_field'?"),
         spec={"task_options": {"text_feild": "body"}}),
    Case("unknown-format", "spec", "unknown data.format",
         ("spec.yaml: data.format", "unknown reader 'xml'", "known: "),
         spec={"data": {"format": "xml"}}),
    Case("unknown-logger", "spec", "misspelt logger",
         ("spec.yaml: train.loggers[0]", "unknown logger 'tensorbord'", "did you mean 'tensorboard'?"),
         spec={"train": {"loggers": ["tensorbord"]}}),
    Case("set-not-assignment", "spec", "--set without '='",
         ("--set", "'train.lr'", "is not key=value"), args=("--set", "train.lr")),
    Case("set-wrong-type", "spec", "--set with a value of the wrong type",
         ("spec.yaml", "train.batch_size", "got 'big'", "expected an integer"),
         args=("--set", "train.batch_size=big")),
    # ------------------------------------------------------------------ data files
    Case("data-missing", "data", "data file that does not exist",
         ("data.validation", "file not found", "nope.jsonl"), spec={"data": {"validation": "nope.jsonl"}}),
    Case("data-empty", "data", "empty data file",
         ("data.validation", "empty.jsonl is empty"), files={"empty.jsonl": ""},
         spec={"data": {"validation": "empty.jsonl"}}),
    Case("data-folder", "data", "a folder where a data file belongs",
         ("data.train", "is a folder", "expected a data file"), setup="data_folder"),
    Case("data-bad-json", "data", "a line that is not JSON",
         ("bad.jsonl:2", "invalid JSON", "Expecting ',' delimiter at column 14"),
         files={"bad.jsonl": '{"text": "a", "label": "pos"}\n{"text": "b" "label": "neg"}\n'},
         spec={"data": {"validation": "bad.jsonl"}}),
    Case("data-fifo", "data", "a named pipe where a data file belongs",
         ("data.validation", "pipe.jsonl is not a regular file", "expected a data file"), setup="data_fifo"),
    Case("data-symlink-loop", "data", "a data file that is a symlink loop",
         ("data.validation", "loop-a.jsonl is a symlink loop", "expected a data file"),
         setup="data_symlink_loop"),
    Case("data-path-controls", "data", "a data path with a newline and a bidi override",
         ("data.validation", "file not found", "de\\u202ev\\nx.jsonl"),
         spec={"data": {"validation": "de\u202ev\nx.jsonl"}}),
    Case("data-path-nul", "data", "a data path with a NUL character",
         ("data.validation", "dev\\x00.jsonl", "is not a file path (it holds a NUL character)"),
         spec={"data": {"validation": "dev\x00.jsonl"}}),
    Case("data-duplicate-key", "data", "a JSON record that gives a key twice",
         ("twice.jsonl:2", "key 'label' appears twice in one object", "keep one"),
         files={"twice.jsonl": '{"text": "a", "label": "pos"}\n{"text": "b", "label": "pos", "label": "neg"}\n'},
         spec={"data": {"validation": "twice.jsonl"}}),
    Case("data-not-object", "data", "a JSON line that is not an object",
         ("list.jsonl:1", "got list", "expected a JSON object per line"),
         files={"list.jsonl": '["great film", "pos"]\n'}, spec={"data": {"validation": "list.jsonl"}}),
    Case("data-not-utf8", "data", "non-UTF-8 bytes in a data file",
         ("latin1.jsonl:1", "not valid utf-8", "b'\\xe9'", "convert the file to UTF-8"),
         files={"latin1.jsonl": '{"text": "caf\xe9", "label": "pos"}\n'.encode("latin-1")},
         spec={"data": {"validation": "latin1.jsonl"}}),
    Case("data-no-text", "data", "record without the text field",
         ("body.jsonl:1", "missing text field 'text'", "record has: body, label", "task_options.text_field"),
         files={"body.jsonl": jsonl({"body": "great", "label": "pos"})},
         spec={"data": {"validation": "body.jsonl"}}),
    Case("data-text-not-string", "data", "text field holding a number",
         ("num.jsonl:1", "field 'text' must be text", "got 5"),
         files={"num.jsonl": jsonl({"text": 5, "label": "pos"})}, spec={"data": {"validation": "num.jsonl"}}),
    Case("data-no-label", "data", "record without the label field",
         ("nolabel.jsonl:2", "missing label field 'label'", "record has: text"),
         files={"nolabel.jsonl": jsonl({"text": "a", "label": "pos"}, {"text": "b"})},
         spec={"data": {"validation": "nolabel.jsonl"}}),
    Case("unseen-label", "data", "label in dev unseen in train",
         ("dev2.jsonl:2", "label 'meh'", "(neg, pos)", "unseen_labels: ignore"),
         files={"dev2.jsonl": jsonl({"text": "a", "label": "pos"}, {"text": "b", "label": "meh"})},
         spec={"data": {"validation": "dev2.jsonl"}}),
    Case("train-label-not-listed", "data", "a training label missing from task_options.labels",
         ("tr3.jsonl:2", "label 'meh' is not in task_options.labels (neg, pos)", "add it to task_options.labels"),
         files={"tr3.jsonl": jsonl({"text": "a", "label": "pos"}, {"text": "b", "label": "meh"},
                                   {"text": "c", "label": "neg"})},
         spec={"data": {"train": "tr3.jsonl", "validation": DROP}, "task_options": {"labels": ["neg", "pos"]}}),
    Case("one-label", "data", "training data with a single label",
         ("data.train", "at least 2 distinct labels", "['pos']"),
         files={"pos.jsonl": jsonl({"text": "a", "label": "pos"}, {"text": "b", "label": "pos"})},
         spec={"data": {"train": "pos.jsonl", "validation": DROP}}),
    Case("csv-columns", "data", "CSV row with the wrong number of fields",
         ("rows.csv:3", "3 fields", "expected 2 (text, label)"),
         files={"rows.csv": "text,label\ngreat film,pos\nawful,plot,neg\n"},
         spec={"data": {"validation": "rows.csv"}}),
    Case("unknown-extension", "data", "data file whose extension names no format",
         ("data.dat", "cannot tell the format from the extension '.dat'", "set data.format to one of"),
         files={"data.dat": GOOD}, spec={"data": {"validation": "data.dat"}}),
    Case("reader-option", "data", "misspelt reader option",
         ("data.reader_options: unknown option 'delimter'", "allowed: encoding"),
         spec={"data": {"reader_options": {"delimter": ";"}}}),
    Case("conll-columns", "data", "CoNLL row with the wrong number of columns",
         ("tags.conll:3", "3 columns, expected 2 (as on line 1)", "row: 'Bob\\tB-person\\textra'"),
         files={"tags.conll": "Alice\tB-person\n\nBob\tB-person\textra\n", "ok.conll": CONLL_OK},
         spec={"task": "token_classification", "data": {"train": "ok.conll", "validation": "tags.conll"}},
         task="token_classification"),
    Case("qa-offset-outside", "data", "QA answer offset outside the passage",
         ("qa_bad.jsonl:1", "answer_start 30 of 'paris'", "is not an offset inside the passage (0..14)"),
         files={"qa_ok.jsonl": QA_OK, "qa_bad.jsonl": QA_OK.replace('"text": ["alice"], "answer_start": [0]',
                                                                     '"text": ["paris"], "answer_start": [30]')},
         spec={"task": "extractive_qa", "data": {"train": "qa_ok.jsonl", "validation": "qa_bad.jsonl"},
               "task_options": QA_OPTIONS},
         task="extractive_qa"),
    Case("qa-offset-mismatch", "data", "QA answer text that does not match the passage at its offset",
         ("qa_bad.jsonl:1", "answer 'paris' does not match the passage at answer_start 3 ('ce we')",
          "fix the offset or set task_options.answer_mismatch: warn"),
         files={"qa_ok.jsonl": QA_OK, "qa_bad.jsonl": QA_OK.replace('"text": ["alice"], "answer_start": [0]',
                                                                     '"text": ["paris"], "answer_start": [3]')},
         spec={"task": "extractive_qa", "data": {"train": "qa_ok.jsonl", "validation": "qa_bad.jsonl"},
               "task_options": {**QA_OPTIONS, "answer_mismatch": "error"}},
         task="extractive_qa"),
    # ------------------------------------------------------------ datasets sources (taskbert[datasets])
    Case("hub-dataset-offline", "data", "hub dataset not in the local datasets cache while offline",
         ("data.train: no-such-org/no-such-data (split train)", "offline mode is on",
          "not in the local datasets cache"),
         spec={"data": {"train": {"hub": "no-such-org/no-such-data"}}}),
    Case("hub-source-key", "data", "misspelt key of a hub dataset source",
         ("spec.yaml", "unknown key 'data.train.splt'", "did you mean 'split'?", "allowed: hub, config, split"),
         spec={"data": {"train": {"hub": "imdb", "splt": "train"}}}),
    Case("datasets-dict-folder", "data", "save_to_disk folder of a DatasetDict, not of one split",
         ("data.train", "holds a DatasetDict with splits test, train", "point data.train at one of them"),
         setup="hf_dataset_dict"),
    Case("parquet-missing-column", "data", "Parquet file without the text column",
         ("train.parquet:row 0", "missing text field 'text'", "record has: sentence, label",
          "set task_options.text_field"), setup="hf_parquet"),
    # ------------------------------------------------------------------ the encoder
    Case("max-length-positions", "encoder", "max_length beyond the model's positions",
         ("encoder.max_length", "4096 exceeds the 128 tokens the model's positions hold", "from 8 to 128"),
         spec={"encoder": {"max_length": 4096}}),
    Case("encoder-no-tokenizer", "encoder", "encoder folder without a tokenizer",
         ("encoder.model", "has no tokenizer", "set encoder.tokenizer"), setup="encoder_no_tokenizer"),
    Case("encoder-missing", "encoder", "encoder folder that does not exist",
         ("encoder.model", "'./no/such/model'", "model folder not found"),
         spec={"encoder": {"model": "./no/such/model"}}),
    Case("encoder-no-config", "encoder", "encoder folder without config.json",
         ("encoder.model", "has no config.json", "a saved model folder"), setup="encoder_no_config"),
    Case("encoder-bad-config", "encoder", "encoder config.json that is not JSON",
         ("encoder.model", "config.json is not valid JSON"), setup="encoder_bad_config"),
    Case("encoder-no-weights", "encoder", "encoder folder without weights",
         ("encoder.model: cannot load", "no-weights", "model.safetensors"), setup="encoder_no_weights"),
    Case("encoder-config-architecture", "encoder", "config.json naming another architecture than its weights",
         ("encoder.model", "says model_type 'gpt2' but its architectures name BertModel", "from one model"),
         setup="encoder_config_other_architecture"),
    Case("encoder-config-vocab", "encoder", "config.json vocab_size unlike the weights' embeddings",
         ("encoder.model", "config.json says vocab_size 1000 and width 32",
          "(embeddings.word_embeddings.weight is [83, 32])", "from one model"), setup="encoder_config_other_vocab"),
    Case("encoder-tokenizer-too-big", "encoder", "a tokenizer with more tokens than the embeddings hold",
         ("encoder.tokenizer", "its tokenizer has 90 tokens", "embeddings hold 83",
          "use the tokenizer the model was trained with"), setup="encoder_bigger_tokenizer"),
    Case("encoder-hub-offline", "encoder", "hub id not in the local cache while offline",
         ("encoder.model: 'no-such-org/no-such-model' is not a local folder and not in the Hugging Face cache",
          "offline mode is on"), spec={"encoder": {"model": "no-such-org/no-such-model"}}),
    # ------------------------------------------------------------------ the run folder
    Case("output-is-file", "output", "output path that is a file",
         ("output:", "{dir}/run is a file", "give a folder path"), setup="output_is_file"),
    Case("output-unwritable", "output", "output folder that cannot be written",
         ("output: cannot write in", "choose a writable folder"), setup="output_unwritable"),
    Case("output-holds-run", "output", "output folder that already holds a run",
         ("output: {dir}/run already holds a run", "--resume", "--overwrite"), setup="finished_run"),
    Case("output-not-a-run", "output", "output folder holding other files",
         ("output: {dir}/run is not empty and holds no taskbert run", "notes.txt", "a new or empty folder"),
         setup="output_foreign"),
    Case("output-holds-inputs", "output", "output folder that holds the spec and data",
         ("output: {dir} holds the spec", "a folder of its own"), spec={"output": "."}),
    # ------------------------------------------------------------------ --resume
    Case("resume-nothing", "resume", "--resume with no run to continue",
         ("--resume: {dir}/run holds no run to resume", "leave out --resume"), args=("--resume",)),
    Case("resume-changed-spec", "resume", "--resume with a changed spec",
         ("--resume: train.lr is 0.002", "used 0.001", "pass --set train.lr=0.001 as the run did",
          "resume with the run's own spec ({dir}/run/spec.yaml)"),
         args=("--resume", "--set", "train.lr=0.002"), setup="finished_run"),
    Case("resume-changed-data", "resume", "--resume after the data changed",
         ("data.train", "changed since the run", "SHA-256 differs", "resume with the same data"),
         args=("--resume",), setup="finished_run_then_new_data"),
]


def markdown_table(cases=CASES):
    """The docs/reliability.md table of the cases: number, group, bad input, parts of the error line."""
    lines = ["| # | kind | bad input | the one line on stderr names |", "|---|---|---|---|"]
    for i, case in enumerate(cases, 1):
        parts = " · ".join(f"`{p.replace('{dir}/', '').replace('{dir}', '.')}`" for p in case.expect)
        parts = parts.replace("|", "\\|")
        lines.append(f"| {i} | {case.group} | {case.what} | {parts} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(f"{len(CASES)} cases\n")
    print(markdown_table())
