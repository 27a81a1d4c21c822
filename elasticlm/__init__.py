"""elasticlm: elastic architecture search (ELM) for compact language models.

`import elasticlm` is enough for transformers' Auto classes to load a saved elasticlm model
(`config.json` with `model_type: "elasticlm"`):

    import elasticlm
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained("RUN/models/found")

The registration is lazy, so that `import elasticlm` (and `elasticlm space`) stays free of torch: the
model classes live in `elasticlm.models.modeling`, which needs torch and registers them when it is
imported. Until then, `import elasticlm` leaves a marker in transformers' config registry (installed
when `transformers.models.auto.configuration_auto` is imported, or at once if it already is); the
first time transformers looks up the model type "elasticlm" (every `Auto*.from_pretrained`,
`AutoConfig.for_model` and `pipeline(...)` does), the marker imports `elasticlm.models`, which
registers `AutoConfig` and the `AutoModel*` classes for real.
"""

from __future__ import annotations

import importlib.machinery
import sys

__version__ = "0.1.0"

from elasticlm.errors import ElasticLMError  # noqa: E402

__all__ = ["ElasticLMError", "__version__"]

MODEL_TYPE = "elasticlm"
_CONFIG_AUTO = "transformers.models.auto.configuration_auto"


class _LazyRegistry(dict):
    """transformers' registry of extra config classes (model_type -> class), which imports
    `elasticlm.models` (registering the Auto classes) the first time "elasticlm" is looked up."""

    def _load(self, key: object) -> None:
        if key == MODEL_TYPE and not dict.__contains__(self, MODEL_TYPE) and "elasticlm.models" not in sys.modules:
            import elasticlm.models  # noqa: F401  (registers AutoConfig and the AutoModel* classes)

    def __contains__(self, key: object) -> bool:
        self._load(key)
        return dict.__contains__(self, key)

    def __getitem__(self, key):
        self._load(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._load(key)
        return dict.get(self, key, default)


def _install_marker(module) -> None:
    """Swap transformers' CONFIG_MAPPING extra-content dict for a `_LazyRegistry` (once)."""
    mapping = getattr(module, "CONFIG_MAPPING", None)
    extra = getattr(mapping, "_extra_content", None)
    if isinstance(extra, dict) and not isinstance(extra, _LazyRegistry):
        mapping._extra_content = _LazyRegistry(extra)


class _AfterImport:
    """A `sys.meta_path` finder that finds nothing itself; when transformers' configuration_auto is imported, runs
    `_install_marker` right after the module has executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _CONFIG_AUTO:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_mark(module):
            exec_module(module)
            _install_marker(module)

        spec.loader.exec_module = exec_and_mark
        return spec


def _register_lazily() -> None:
    if _CONFIG_AUTO in sys.modules:
        _install_marker(sys.modules[_CONFIG_AUTO])
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


_register_lazily()
