"""Compile the test Solidity sources in devtools/chain/contracts/ with npm's solc-js.

Owns: turning ``contracts/*.sol`` into ``{ContractName: (abi, bytecode_hex)}``.
It runs ``node`` with a tiny standard-JSON script (no network: the compiler is
the ``solc`` package pinned in /package.json) and caches the result as JSON in
``devtools/chain/build/`` keyed on a hash of the sources, compiler settings and
the installed solc version, so only the first run after a source change pays
the ~1-2 s compile.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

CHAIN_DIR = Path(__file__).resolve().parent
CONTRACTS_DIR = CHAIN_DIR / "contracts"
BUILD_DIR = CHAIN_DIR / "build"
REPO_ROOT = CHAIN_DIR.parent.parent

# Pinned so bytecode does not depend on solc's moving default EVM version.
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}

_JS = r"""
const solc = require('solc');
let input = '';
process.stdin.on('data', (c) => (input += c));
process.stdin.on('end', () => {
  process.stdout.write(JSON.stringify({version: solc.version(), output: JSON.parse(solc.compile(input))}));
});
"""

Artifacts = dict[str, tuple[list, str]]


class CompileError(RuntimeError):
    """solc reported errors, or node/solc could not be run."""


def _solc_version() -> str:
    pkg = REPO_ROOT / "node_modules" / "solc" / "package.json"
    if not pkg.exists():
        raise CompileError(f"{pkg} missing: run `npm ci` in {REPO_ROOT}")
    return json.loads(pkg.read_text())["version"]


def _sources(contracts_dir: Path) -> dict[str, str]:
    files = sorted(contracts_dir.glob("*.sol"))
    if not files:
        raise CompileError(f"no .sol files in {contracts_dir}")
    return {f.name: f.read_text() for f in files}


def _cache_key(sources: dict[str, str], solc_version: str) -> str:
    h = hashlib.sha256()
    h.update(solc_version.encode())
    h.update(json.dumps(SETTINGS, sort_keys=True).encode())
    h.update(_JS.encode())
    for name, text in sorted(sources.items()):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()[:16]


def _run_solc(sources: dict[str, str]) -> Artifacts:
    std_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS,
    }
    try:
        proc = subprocess.run(
            ["node", "-e", _JS],
            input=json.dumps(std_input),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,  # so require('solc') resolves from /node_modules
            timeout=120,
        )
    except FileNotFoundError as e:
        raise CompileError("`node` not found on PATH") from e
    if proc.returncode != 0:
        raise CompileError(f"node/solc failed ({proc.returncode}): {proc.stderr.strip()}")
    output = json.loads(proc.stdout)["output"]
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    artifacts: Artifacts = {}
    for per_file in output["contracts"].values():
        for name, c in per_file.items():
            if name in artifacts:
                raise CompileError(f"duplicate contract name {name}")
            artifacts[name] = (c["abi"], "0x" + c["evm"]["bytecode"]["object"])
    return artifacts


def compile_contracts(contracts_dir: Path = CONTRACTS_DIR, build_dir: Path = BUILD_DIR) -> Artifacts:
    """Return ``{name: (abi, bytecode)}`` for every contract in ``contracts_dir``."""
    sources = _sources(contracts_dir)
    cache = build_dir / f"artifacts-{_cache_key(sources, _solc_version())}.json"
    if cache.exists():
        data = json.loads(cache.read_text())
        return {name: (v["abi"], v["bytecode"]) for name, v in data.items()}
    artifacts = _run_solc(sources)
    build_dir.mkdir(parents=True, exist_ok=True)
    payload = {name: {"abi": abi, "bytecode": bc} for name, (abi, bc) in artifacts.items()}
    # Atomic write: parallel test workers may compile at the same time.
    fd, tmp = tempfile.mkstemp(dir=build_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, cache)
    for stale in build_dir.glob("artifacts-*.json"):
        if stale != cache:
            stale.unlink(missing_ok=True)
    return artifacts


if __name__ == "__main__":
    for n, (abi, bc) in compile_contracts().items():
        print(f"{n}: {len(abi)} ABI entries, {len(bc) // 2 - 1} bytes")
