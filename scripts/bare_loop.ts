/**
 * The bare Deno loop of `deno task bench`: moves one file over one TCP connection with no
 * protocol, no checksum and no overlap, reading and writing 32 MiB buffers. It is the ceiling of
 * what our runtime does on this machine, against which ferry is measured. Its file reads and
 * writes are synchronous, as the ferry client's are: Deno's asynchronous ones go through another
 * thread, which costs more than the copy (docs/performance.md).
 *
 * Usage: `bare_loop.ts send|recv listen|connect HOST:PORT FILE`
 *
 * - `send` reads FILE with `file.readSync` into a 32 MiB page-aligned buffer and writes each chunk
 *   to the socket, then shuts down its write side and waits for the peer to close.
 * - `recv` reads the socket into a 32 MiB buffer and writes each chunk to FILE with
 *   `file.writeSync` until EOF.
 * - `listen` binds HOST:PORT (PORT 0 picks one), prints `listening on HOST:PORT` on stderr and
 *   serves exactly one connection; `connect` connects to HOST:PORT.
 *
 * @module
 */

import { alignedBuffer } from "../lib/buffer_pool.ts";
import { writeAll, writeAllSync } from "../lib/write_all.ts";

// Page-aligned like ferry's own buffers, so the ceiling is not lowered by the slow kernel copy
// into a misaligned buffer (see alignedBuffer).
const CHUNK = 32 * 1024 * 1024;

async function send(conn: Deno.TcpConn, path: string): Promise<number> {
  const file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(alignedBuffer(CHUNK));
  let total = 0;
  try {
    while (true) {
      const n = file.readSync(buffer);
      if (n === null) break;
      await writeAll(conn, buffer.subarray(0, n));
      total += n;
    }
  } finally {
    file.close();
  }
  await conn.closeWrite();
  // Wait for the receiver to close, so the transfer is over when this process exits.
  while (await conn.read(buffer.subarray(0, 65536)) !== null) {
    // Nothing is expected back.
  }
  return total;
}

async function recv(conn: Deno.TcpConn, path: string): Promise<number> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const buffer = new Uint8Array(alignedBuffer(CHUNK));
  let total = 0;
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      writeAllSync(file, buffer.subarray(0, n));
      total += n;
    }
  } finally {
    file.close();
  }
  return total;
}

function parseEndpoint(text: string): { hostname: string; port: number } {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(text);
  if (!match) throw new Error(`Expected HOST:PORT, got ${JSON.stringify(text)}`);
  return { hostname: match[1], port: Number(match[2]) };
}

async function main(args: string[]): Promise<number> {
  const [role, mode, endpoint, path] = args;
  if (
    args.length !== 4 || (role !== "send" && role !== "recv") ||
    (mode !== "listen" && mode !== "connect")
  ) {
    console.error("Usage: bare_loop.ts send|recv listen|connect HOST:PORT FILE");
    return 2;
  }
  const { hostname, port } = parseEndpoint(endpoint);
  let conn: Deno.TcpConn;
  if (mode === "listen") {
    const listener = Deno.listen({ hostname, port });
    console.error(`listening on ${hostname}:${listener.addr.port}`);
    conn = await listener.accept();
    listener.close();
  } else {
    conn = await Deno.connect({ hostname, port });
  }
  try {
    const total = role === "send" ? await send(conn, path) : await recv(conn, path);
    console.error(`${role}: ${total} bytes`);
  } finally {
    conn.close();
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
