"""replica.data: records, importers, validation, feedback → pairs, splits, consent, prepare."""

from replica.data.exact_json import install as _install_exact_json

_install_exact_json()  # before any prepared split is written or read (see exact_json.py)
