#!/usr/bin/env python3
"""A peer that speaks the seed's protocol, written from the seed write-ups (shared/seeds/000).

It stands in for the original Python coursework scripts in ferry's tests and benchmark, and
deliberately knows nothing about ferry itself (stdlib only, Python 3.11).

The protocol, per connection, one request each:
  client -> server   the request line as typed: "put NAME", "get NAME" or "list" (UTF-8, no
                     terminator); the server reads at most 32 bytes of it.
  put:  server -> client "pass" (name is free) or "cancel"; on "pass" the client sends the raw
        bytes and shuts down its write side; the server writes them until EOF, then closes.
  get:  server -> client "cancel" (no such file), or "pass" followed by the raw bytes, then the
        server shuts the connection down.
  list: server -> client the names, one per line, in one message; then the server closes.
Data moves in 32 MiB (33554432-byte) reads and receives, as the seed describes.

Usage:
  seed_peer.py server [--port N] [--root DIR] [--host ADDR]
  seed_peer.py client HOST PORT put LOCAL [REMOTE] | get REMOTE [LOCAL] | list
The server prints "listening on HOST:PORT" on stderr once bound and serves one client at a
time until killed. The client exits 0 on success and 1 on "cancel" or failure.
"""

import argparse
import os
import socket
import sys

CHUNK = 33554432  # 32 MiB, the seed's read and receive size
REQUEST_MAX = 32  # the seed reads at most 32 bytes of request line and of reply code


def log(message):
    print(message, file=sys.stderr, flush=True)


def recv_all(sock, out):
    """Receives until EOF in CHUNK-sized recv calls, writing to file `out`; returns bytes."""
    total = 0
    while True:
        data = sock.recv(CHUNK)
        if not data:
            return total
        out.write(data)
        total += len(data)


def send_file(sock, path):
    """Sends a file in CHUNK-sized reads; returns bytes sent."""
    total = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK)
            if not data:
                return total
            sock.sendall(data)
            total += len(data)


# ---------------------------------------------------------------------------- server


def serve_one(conn, root):
    request = conn.recv(REQUEST_MAX).decode("utf-8", errors="replace")
    parts = request.split(" ", 1)
    op = parts[0]
    name = parts[1] if len(parts) > 1 else ""
    if op == "list":
        names = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n)))
        conn.sendall("\n".join(names).encode("utf-8"))
        return f"list: {len(names)} names"
    # The seed keeps files in one folder: refuse anything that is not a plain name in it.
    if op not in ("put", "get") or not name or name in (".", "..") or "/" in name or "\0" in name:
        conn.sendall(b"cancel")
        return f"refused request {request!r}"
    path = os.path.join(root, name)
    if op == "put":
        if os.path.exists(path):
            conn.sendall(b"cancel")
            return f"put {name}: cancel (exists)"
        conn.sendall(b"pass")
        with open(path, "wb") as out:
            total = recv_all(conn, out)
        return f"put {name}: {total} bytes"
    if not os.path.isfile(path):
        conn.sendall(b"cancel")
        return f"get {name}: cancel (missing)"
    conn.sendall(b"pass")
    total = send_file(conn, path)
    conn.shutdown(socket.SHUT_WR)
    return f"get {name}: {total} bytes"


def run_server(host, port, root):
    os.makedirs(root, exist_ok=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(16)
        bound = listener.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        log(f"listening on {shown}:{bound[1]}")
        while True:  # one client at a time, forever
            conn, peer = listener.accept()
            with conn:
                try:
                    log(f"{peer[0]}:{peer[1]} {serve_one(conn, root)}")
                except OSError as error:
                    log(f"{peer[0]}:{peer[1]} failed: {error}")


# ---------------------------------------------------------------------------- client


def run_client(host, port, op, args):
    if op == "list" and args:
        return usage("list takes no arguments")
    if op in ("put", "get") and not 1 <= len(args) <= 2:
        return usage(f"{op} needs 1 or 2 names")
    if op == "put":
        local = args[0]
        remote = args[1] if len(args) > 1 else os.path.basename(local)
        if not os.path.isfile(local):
            log(f"cannot read {local}")
            return 1
        request = f"put {remote}"
    elif op == "get":
        remote = args[0]
        local = args[1] if len(args) > 1 else os.path.basename(remote)
        request = f"get {remote}"
    elif op == "list":
        request = "list"
    else:
        return usage(f"unknown request {op!r}")

    with socket.create_connection((host, port)) as sock:
        sock.sendall(request.encode("utf-8"))
        if op == "list":
            chunks = []
            while data := sock.recv(CHUNK):
                chunks.append(data)
            text = b"".join(chunks).decode("utf-8")
            sys.stdout.write(text + ("\n" if text and not text.endswith("\n") else ""))
            return 0
        reply = sock.recv(REQUEST_MAX)
        # On get, "pass" may arrive in the same segment as the first file bytes.
        if not reply.startswith(b"pass"):
            log(f"{op} {remote}: server answered {reply[:6].decode('utf-8', 'replace')!r}")
            return 1
        if op == "put":
            total = send_file(sock, local)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(CHUNK):  # wait for the server to finish and close
                pass
            log(f"put {local} as {remote}: {total} bytes")
            return 0
        with open(local, "wb") as out:
            out.write(reply[4:])
            total = len(reply) - 4 + recv_all(sock, out)
        log(f"get {remote} to {local}: {total} bytes")
        return 0


def usage(message):
    log(f"seed_peer: {message}")
    log(__doc__.split("Usage:")[1].split("The server")[0].rstrip())
    return 2


def main(argv):
    if len(argv) >= 1 and argv[0] == "server":
        parser = argparse.ArgumentParser(prog="seed_peer.py server")
        parser.add_argument("--port", type=int, default=0)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--root", default=".")
        opts = parser.parse_args(argv[1:])
        try:
            run_server(opts.host, opts.port, opts.root)
        except KeyboardInterrupt:
            return 0
        return 0
    if len(argv) >= 4 and argv[0] == "client":
        try:
            return run_client(argv[1], int(argv[2]), argv[3], argv[4:])
        except (OSError, ValueError) as error:
            log(f"seed_peer: {error}")
            return 1
    return usage("expected 'server ...' or 'client HOST PORT REQUEST ...'")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
