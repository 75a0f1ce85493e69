"""A spec: YAML (or a dict) in, a frozen, checked :class:`~taskbert.config.spec.Spec` out.

:mod:`.spec` reads the file, applies ``--set`` overrides and checks every core key;
:mod:`.schema` turns a dataclass of task or reader options into a checked instance and
describes it for ``taskbert init``. Nothing here loads a model.
"""
