"""``python -m swarm_cli.qwen_server``: one local Qwen instance (xllamacpp's OpenAI-compatible server).

Each instance is its own process so that one crash or hang never takes the others down.
"""

from __future__ import annotations

import argparse
import signal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="path to the GGUF file")
    parser.add_argument("--alias", default="qwen2.5-coder-0.5b-instruct", help="model id served at /v1/models")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for generation")
    parser.add_argument("--parallel", type=int, default=2, help="concurrent slots (n_parallel)")
    parser.add_argument("--ctx-per-slot", type=int, default=4096)
    args = parser.parse_args()

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx_per_slot * args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.use_jinja = True
    params.verbosity = 1
    server = xllamacpp.Server(params)
    print(f"qwen instance {args.alias} serving on http://{args.host}:{args.port}/v1", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    del server


if __name__ == "__main__":
    main()
