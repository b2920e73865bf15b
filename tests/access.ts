/**
 * Helpers of the access-control tests (token, TLS on the wire, exposure): a TCP relay that
 * records every byte as an eavesdropper would see it, raw connections, token files, and a timed
 * client run.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Endpoint,
  ferry,
  type RunResult,
  type ServerProcess,
  storedFiles,
  waitForEmptyStaging,
} from "./harness.ts";
import { concat, Wire } from "./wire.ts";

// ------------------------------------------------------------------------------------ helpers

/** Runs the client and measures how long it took, in milliseconds. */
export async function timedFerry(
  target: Endpoint,
  args: string[],
): Promise<{ result: RunResult; ms: number }> {
  const started = performance.now();
  const result = await ferry(target, args);
  return { result, ms: performance.now() - started };
}

/** The root holds exactly `names`, and no upload is left in staging. */
export async function assertStored(server: ServerProcess, names: string[], what: string) {
  assert.deepEqual(await storedFiles(server.root), [...names].sort(), `${what}: stored files`);
  await waitForEmptyStaging(server.root, { what });
}

/** Writes a token file (with the usual trailing newline) and returns its path and bytes. */
export async function writeToken(
  dir: string,
  name: string,
): Promise<{ path: string; token: string }> {
  const token = `tok-${crypto.randomUUID().replaceAll("-", "")}`;
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, token + "\n");
  return { path, token };
}

// --------------------------------------------------------------------------- raw connections

/**
 * A raw connection to `target`, for what the client cannot do: hold a connection open, stall
 * mid-frame, or send a wrong proof. An aborted connection counts as closed, as a reset does.
 */
export function openRaw(target: Endpoint): Promise<Wire> {
  return Wire.connect(target, { abortIsEnd: true });
}

// ------------------------------------------------------------------------------ TCP recorder

/**
 * A TCP relay on 127.0.0.1:0 that forwards every connection to `upstream` and records every
 * byte in both directions, as a network eavesdropper would see them.
 */
export class Relay implements AsyncDisposable, Endpoint {
  readonly host = "127.0.0.1";
  readonly port: number;
  /** Chunks sent by clients, in order. */
  readonly toServer: Uint8Array[] = [];
  /** Chunks sent by the server, in order. */
  readonly toClient: Uint8Array[] = [];
  #listener: Deno.Listener;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #accepting: Promise<void>;
  connections = 0;

  constructor(upstream: Endpoint) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#accepting = (async () => {
      try {
        for await (const conn of listener) {
          this.connections++;
          this.#track(this.#relay(conn, upstream));
        }
      } catch (error) {
        if (!(error instanceof Deno.errors.BadResource)) throw error;
      }
    })();
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #relay(client: Deno.Conn, upstream: Endpoint): Promise<void> {
    this.#conns.add(client);
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: upstream.host, port: upstream.port });
    } catch {
      this.#close(client);
      return;
    }
    this.#conns.add(server);
    await Promise.all([
      this.#pump(client, server, this.toServer),
      this.#pump(server, client, this.toClient),
    ]);
    this.#close(client);
    this.#close(server);
  }

  /** Copies `from` to `to`, recording; passes a half-close on, and a failure as a full close. */
  async #pump(from: Deno.Conn, to: Deno.Conn, record: Uint8Array[]): Promise<void> {
    const buffer = new Uint8Array(65536);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        const chunk = buffer.slice(0, n);
        record.push(chunk);
        for (let offset = 0; offset < n;) offset += await to.write(chunk.subarray(offset));
      }
      await to.closeWrite().catch(() => {});
    } catch {
      this.#close(from);
      this.#close(to);
    }
  }

  #close(conn: Deno.Conn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Everything recorded, both directions. */
  recorded(): Uint8Array {
    return concat([...this.toServer, ...this.toClient]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    await this.#accepting;
    for (const conn of [...this.#conns]) this.#close(conn);
    await Promise.allSettled([...this.#tasks]);
  }
}
