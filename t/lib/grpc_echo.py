#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""A gRPC server and client for t/46 (python3-grpcio, Debian's package).

  grpc_echo.py server PORT
      serves the unary method /ak.Echo/Echo on 127.0.0.1:PORT, raw bytes in
      and out (no protobuf): it answers what it saw, never a key value:
      "key=<yes|no> id=<x-key-id> owner=<x-owner> body=<request>".
      Prints "ready" once it listens; stops on SIGTERM or when stdin ends.

  grpc_echo.py call PORT BODY [HEADER]
      calls /ak.Echo/Echo through 127.0.0.1:PORT (nginx) with the key from
      the environment (AK_GRPC_KEY; none when unset) as metadata HEADER
      (default x-api-key); prints "OK <answer>" or "ERR <code> <details>".
"""

import os
import signal
import sys
import threading
from concurrent import futures

import grpc


def serve(port):
    def echo(request, context):
        md = dict(context.invocation_metadata())
        out = "key=%s id=%s owner=%s body=%s" % (
            "yes" if "x-api-key" in md else "no",
            md.get("x-key-id", ""), md.get("x-owner", ""),
            request.decode("utf-8", "replace"))
        return out.encode()

    handler = grpc.method_handlers_generic_handler(
        "ak.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         handlers=[handler])
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()),
                     daemon=True).start()
    print("ready", flush=True)
    done.wait(120)
    server.stop(0)


def call(port, body, header):
    md = []
    key = os.environ.get("AK_GRPC_KEY")
    if key is not None:
        md.append((header, key))
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        f = ch.unary_unary("/ak.Echo/Echo")
        try:
            out = f(body.encode(), metadata=md, timeout=10)
            print("OK " + out.decode("utf-8", "replace"))
        except grpc.RpcError as e:
            print("ERR %s %s" % (e.code().name, e.details()))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        call(int(sys.argv[2]), sys.argv[3],
             sys.argv[4] if len(sys.argv) > 4 else "x-api-key")
