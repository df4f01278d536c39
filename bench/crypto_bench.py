"""What the envelope layer costs on top of AES-GCM itself, measured in the same run on the same payload, and
how many KMS calls a warm process makes over a working set of distinct data keys.

Floor: ``AESGCM.encrypt``/``decrypt`` of a 1 KB payload with a fresh nonce and the same associated data.
Measured: ``Sealer.seal``/``open`` of the same payload with a warm data-key cache (cache lookup, lock, nonce,
envelope header build/parse, associated data). KMS is moto, in process, and is asserted to be called 0 times
during the timed loops: a warm seal or open must never leave the process.

Working set (issue 23, item 7): envelopes each under a data key of its own, opened by a fresh process once
(cold: one Decrypt each), then again (warm: target 0 KMS calls), with the default cache and, for comparison,
with the 1,024-key cache of before.

Run: ``.venv/bin/python bench/crypto_bench.py [--iterations 20000] [--rounds 7] [--working-set 1500,5000]``
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "common"))
sys.path.insert(0, str(ROOT))
from devserver.local_env import FAKE_AWS  # noqa: E402 - after the path is set

os.environ.update(FAKE_AWS)

import boto3  # noqa: E402 - after the environment and path are set
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from moto import mock_aws  # noqa: E402
from timing import per_call_us  # noqa: E402 - bench/timing.py, beside this script

from connvault.crypto.data_keys import DataKeys  # noqa: E402
from connvault.crypto.envelope import NONCE_BYTES, SealContext  # noqa: E402
from connvault.crypto.sealer import Sealer  # noqa: E402

PAYLOAD_BYTES = 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--working-set", default="1500,5000", help="distinct data keys, comma separated")
    args = parser.parse_args(argv)

    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        kms_calls: list[str] = []
        key_arn = kms.create_key(Description="bench")["KeyMetadata"]["Arn"]
        kms.meta.events.register("before-call.kms.*", lambda model, **_: kms_calls.append(model.name))
        salt = uuid.uuid4()
        sealer = Sealer(DataKeys(kms, key_arn, lambda _tenant: salt, max_uses=10**9))
        context = SealContext(uuid.uuid4(), "connections.credentials", uuid.uuid4())
        payload = os.urandom(PAYLOAD_BYTES)

        blob = sealer.seal(payload, context)  # warms the cache: one GenerateDataKey
        assert sealer.open(blob, context) == payload
        warm_up_calls = len(kms_calls)

        aead = AESGCM(AESGCM.generate_key(bit_length=256))
        aad = context.associated_data()
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = aead.encrypt(nonce, payload, aad)

        results = {
            "aesgcm encrypt": per_call_us(
                lambda: aead.encrypt(os.urandom(NONCE_BYTES), payload, aad), args.iterations, args.rounds
            ),
            "sealer seal": per_call_us(lambda: sealer.seal(payload, context), args.iterations, args.rounds),
            "aesgcm decrypt": per_call_us(lambda: aead.decrypt(nonce, ciphertext, aad), args.iterations, args.rounds),
            "sealer open": per_call_us(lambda: sealer.open(blob, context), args.iterations, args.rounds),
        }
        timed_calls = len(kms_calls) - warm_up_calls

    print(f"payload {PAYLOAD_BYTES} B, {args.iterations} iterations x {args.rounds} rounds (median of rounds)")
    print(f"KMS calls: warm-up {warm_up_calls}, timed loops {timed_calls}")
    for name, micros in results.items():
        print(f"  {name:<15} {micros:8.2f} us/op")
    print(f"  seal / encrypt  {results['sealer seal'] / results['aesgcm encrypt']:8.2f}x")
    print(f"  open / decrypt  {results['sealer open'] / results['aesgcm decrypt']:8.2f}x")
    warm_calls = working_set([int(n) for n in args.working_set.split(",") if n], payload)
    if timed_calls or warm_calls:
        print("FAIL: a warm seal or open called KMS", file=sys.stderr)
        return 1
    return 0


def working_set(sizes: list[int], payload: bytes) -> int:
    """KMS calls of warm passes over each working set with the default cache (the total, target 0), printed
    beside those of the old 1,024-key cache."""
    total = 0
    print("working set of distinct data keys (KMS calls per pass; cold pass, then two warm ones)")
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        calls: list[str] = []
        key_arn = kms.create_key(Description="bench")["KeyMetadata"]["Arn"]
        kms.meta.events.register("before-call.kms.*", lambda model, **_: calls.append(model.name))
        salt, tenant = uuid.uuid4(), uuid.uuid4()
        writer = Sealer(DataKeys(kms, key_arn, lambda _tenant: salt, max_uses=1))
        for size in sizes:
            contexts = [SealContext(tenant, "connections.credentials", uuid.UUID(int=i)) for i in range(size)]
            blobs = [writer.seal(payload, context) for context in contexts]
            for label, options in (("default cache", {}), ("1,024-key cache", {"max_cached_keys": 1024})):
                reader = Sealer(DataKeys(kms, key_arn, lambda _tenant: salt, **options))
                passes = []
                for _ in range(3):
                    calls.clear()
                    for blob, context in zip(blobs, contexts, strict=True):
                        reader.open(blob, context)
                    passes.append(len(calls))
                print(f"  {size:>6} keys, {label:<16} {passes[0]:>6} cold, {passes[1]:>6} and {passes[2]:>6} warm")
                if not options:
                    total += passes[1] + passes[2]
    return total


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
