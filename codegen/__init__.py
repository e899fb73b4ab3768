"""Code generation from openapi.yaml.

``python -m codegen`` writes two files under ``llm_api/schemas/``:

- ``models.py``: pydantic v2 models of every schema in ``components/schemas``, plus one
  ``<OperationId>Params`` model per operation with parameters (path, query and cookie parameters
  gathered into one object, so they are validated the same way bodies are);
- ``operations.py``: the operation table (method, path, security, models) the app binds routes from.

``python -m codegen --check`` regenerates in memory and exits 1 with a diff when the committed files
differ. Generation is deterministic: same spec, same bytes.
"""
