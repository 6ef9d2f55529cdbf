#!/usr/bin/env python3
"""A provider client that addresses the socket the way Secrets Store CSI drivers before v1.6 did.

Those drivers dialled the provider socket with grpc-go and let it derive `:authority` from the target, so every
request carried the socket path (e.g. `/etc/kubernetes/secrets-store-csi-providers/vault.sock`) as its HTTP/2
`:authority`. Newer drivers send `localhost`.

grpc-python (grpc-core) would derive a different authority on its own (the path, percent-encoded, without its
leading slash), so this client sets the authority explicitly:

  --authority socket-path   the absolute socket path, byte for byte what old drivers sent (default)
  --authority grpc-default  whatever grpc-core derives for `unix://<path>`, without any override

The stubs are generated at run time from the provider API proto with grpc_tools, into a temporary directory.

Input (stdin, JSON):  for `mount`, {"attributes", "secrets", "target_path", "permission",
                      "current_object_version": [{"id", "version"}]}; for `version`, {"version"} or nothing.
Output (stdout, JSON): {"ok": true, "response": {...}} with file contents in base64, or
                      {"ok": false, "code": <grpc code number>, "code_name": "...", "details": "..."}.
Exit status 0 in both cases; anything else means the client itself failed.
"""

import argparse
import base64
import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

PROTO_FILE = "v1alpha1.proto"


def generate_stubs(proto_dir, out_dir):
    """Compiles the proto into out_dir and imports the generated modules."""
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            os.path.join(proto_dir, PROTO_FILE),
        ]
    )
    if status != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with status {status}")
    sys.path.insert(0, out_dir)
    messages = importlib.import_module("v1alpha1_pb2")
    services = importlib.import_module("v1alpha1_pb2_grpc")
    return messages, services


def channel_for(socket_path, authority):
    target = "unix://" + socket_path
    if authority == "socket-path":
        return grpc.insecure_channel(target, options=[("grpc.default_authority", socket_path)])
    return grpc.insecure_channel(target)


def mount(messages, stub, request, timeout):
    versions = [
        messages.ObjectVersion(id=v["id"], version=v["version"])
        for v in request.get("current_object_version", [])
    ]
    response = stub.Mount(
        messages.MountRequest(
            attributes=request["attributes"],
            secrets=request["secrets"],
            target_path=request["target_path"],
            permission=request["permission"],
            current_object_version=versions,
        ),
        timeout=timeout,
    )
    return {
        "object_version": [{"id": v.id, "version": v.version} for v in response.object_version],
        "error": {"code": response.error.code} if response.HasField("error") else None,
        "files": [
            {
                "path": f.path,
                "mode": f.mode,
                "contents": base64.b64encode(f.contents).decode("ascii"),
            }
            for f in response.files
        ],
    }


def version(messages, stub, request, timeout):
    response = stub.Version(messages.VersionRequest(version=request.get("version", "v1alpha1")), timeout=timeout)
    return {
        "version": response.version,
        "runtime_name": response.runtime_name,
        "runtime_version": response.runtime_version,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="absolute path of the provider socket")
    parser.add_argument("--proto-dir", required=True, help="directory holding v1alpha1.proto")
    parser.add_argument("--rpc", choices=["mount", "version"], default="mount")
    parser.add_argument("--authority", choices=["socket-path", "grpc-default"], default="socket-path")
    parser.add_argument("--timeout", type=float, default=30.0, help="call deadline in seconds")
    args = parser.parse_args()

    if not os.path.isabs(args.socket):
        parser.error("--socket must be absolute")
    text = sys.stdin.read()
    request = json.loads(text) if text.strip() else {}

    with tempfile.TemporaryDirectory(prefix="courier-legacy-stubs-") as out_dir:
        messages, services = generate_stubs(args.proto_dir, out_dir)
        with channel_for(args.socket, args.authority) as channel:
            stub = services.CSIDriverProviderStub(channel)
            call = mount if args.rpc == "mount" else version
            try:
                result = {"ok": True, "response": call(messages, stub, request, args.timeout)}
            except grpc.RpcError as error:
                code = error.code()
                result = {
                    "ok": False,
                    "code": code.value[0],
                    "code_name": code.name,
                    "details": error.details() or "",
                }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
