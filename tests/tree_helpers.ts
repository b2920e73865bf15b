/**
 * Helpers of the folder-transfer tests (`put -r`, `get -r`): a snapshot of a tree (content,
 * mtime, permission bits) to compare two sides by, a client run that must succeed and its
 * stdout, the file and folder entries of a manifest a fake server sends, a relay that cuts
 * (or holds) a connection mid-transfer, what a test that kills a client there needs, files
 * whose names are not valid UTF-8, and two ends of a real socket for the library's tree ends.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createChecksum } from "../lib/checksum.ts";
import { FrameReader } from "../lib/frame_reader.ts";
import { FrameWriter } from "../lib/frame_writer.ts";
import {
  assertSuccess,
  ferry,
  runCommand,
  type RunResult,
  type ServerProcess,
  writeRandomFile,
} from "./harness.ts";

const decoder = new TextDecoder();

/** One line per name under `dir`: path, type, size, mtime (ms), mode, and content checksum. */
export async function snapshot(dir: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (path: string, prefix: string) => {
    for await (const entry of Deno.readDir(path)) {
      const full = `${path}/${entry.name}`;
      const name = prefix + entry.name;
      const info = await Deno.lstat(full);
      if (info.isSymlink) continue;
      if (info.isDirectory) {
        lines.push(`${name}/ ${(info.mode! & 0o777).toString(8)}`);
        await walk(full, name + "/");
        continue;
      }
      const checksum = await createChecksum();
      checksum.update(await Deno.readFile(full));
      lines.push(
        `${name} ${info.size} ${info.mtime!.getTime()} ${(info.mode! & 0o7777).toString(8)} ` +
          checksum.digest(),
      );
    }
  };
  await walk(dir, "");
  return lines.sort();
}

/**
 * Each folder's status-change time (ns, from GNU `stat`, so Linux only): a chmod or utime of it
 * moves it on. `folders` are under `dir`; `.` is `dir` itself.
 */
export async function changeTimes(dir: string, folders: string[]): Promise<string[]> {
  const result = await runCommand("stat", ["-c", "%z", ...folders.map((f) => `${dir}/${f}`)]);
  assertSuccess(result, "stat");
  return decoder.decode(result.stdout).trim().split("\n");
}

export async function ok(server: ServerProcess, args: string[], cwd?: string): Promise<RunResult> {
  const result = await ferry(server, args, { cwd });
  assertSuccess(result, args.join(" "));
  return result;
}

export function out(result: RunResult): string {
  return decoder.decode(result.stdout);
}

/** The summary object `--json` prints last: the last line of a run's stdout. */
export function summaryOf(result: RunResult): Record<string, number> {
  return JSON.parse(out(result).trim().split("\n").at(-1)!);
}

export function file(path: string): Record<string, unknown> {
  return { path, type: "file", size: 4, mtime: 0, mode: 0o644 };
}

export function dir(path: string): Record<string, unknown> {
  return { path, type: "dir", size: 0, mtime: 0, mode: 0o755 };
}

/**
 * A relay to `upstream` that forwards everything but cuts the connection once `limit` bytes have
 * gone in one direction (`up`: client to server), as a network failure would; or, with `hold`,
 * forwards nothing more that way until it is closed, so a test can kill a peer mid-transfer.
 */
export function cuttingRelay(
  upstream: Pick<ServerProcess, "host" | "port">,
  limit: number,
  up: boolean,
  hold = false,
): { port: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closed = Promise.withResolvers<void>();
  const done = (async () => {
    const client = await listener.accept();
    const server = await Deno.connect({ hostname: upstream.host, port: upstream.port });
    const pump = async (from: Deno.Conn, to: Deno.Conn, cut: boolean) => {
      const buffer = new Uint8Array(16384);
      let moved = 0;
      try {
        while (true) {
          const n = await from.read(buffer);
          if (n === null) break;
          const take = cut ? Math.min(n, limit - moved) : n;
          let written = 0;
          while (written < take) written += await to.write(buffer.subarray(written, take));
          moved += take;
          if (cut && moved >= limit) {
            if (hold) await closed.promise;
            break;
          }
        }
      } catch {
        // The other side went first.
      }
      for (const conn of [client, server]) {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
    };
    await Promise.all([pump(client, server, up), pump(server, client, !up)]);
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      closed.resolve();
      listener.close();
      await done.catch(() => {});
    },
  };
}

/** The size of the largest file directly in `dir` whose name matches `pattern`, or 0. */
export async function largest(dir: string, pattern: RegExp): Promise<number> {
  let size = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (!pattern.test(entry.name)) continue;
    size = Math.max(size, (await Deno.stat(`${dir}/${entry.name}`).catch(() => null))?.size ?? 0);
  }
  return size;
}

/** Kills `child` (a client spawned mid-transfer) and waits for it to be gone. */
export async function kill(child: Deno.ChildProcess): Promise<void> {
  child.kill("SIGKILL");
  await child.status;
  await child.stdout.cancel().catch(() => {});
  await child.stderr.cancel().catch(() => {});
  await child.stdin.close().catch(() => {});
}

/**
 * The tree the resume tests cut: three small files around `sub/big.bin` of `bigSize` random
 * bytes, the one a cut falls in.
 */
export async function resumeTree(src: string, bigSize: number): Promise<void> {
  await Deno.mkdir(`${src}/sub`, { recursive: true });
  await Deno.writeTextFile(`${src}/a.txt`, "alpha\n");
  await writeRandomFile(`${src}/sub/big.bin`, bigSize);
  await Deno.writeTextFile(`${src}/sub/c.txt`, "gamma\n");
  await Deno.writeTextFile(`${src}/z.txt`, "zeta\n");
}

/**
 * Writes `content` to a file in `dir` whose name is `format` as printf(1) reads it: the way to a
 * name that is not valid UTF-8 (`bad\\377name`), which Deno cannot spell.
 */
export async function createByBytes(dir: string, format: string, content: string): Promise<void> {
  const result = await runCommand("sh", [
    "-c",
    'printf "%s" "$2" > "$(printf "$1")"',
    "sh",
    format,
    content,
  ], { cwd: dir });
  assert.equal(result.code, 0, result.stderr);
}

/** One end of {@link connectedEnds}: the connection, and the frames a tree end reads and writes. */
export interface TreeEnd {
  conn: Deno.Conn;
  frames: FrameReader;
  out: FrameWriter;
}

/**
 * Two ends of one loopback TCP connection, for a receiver and a sender (or a test's own frames)
 * run in this process: closed when disposed.
 */
export async function connectedEnds(): Promise<[TreeEnd, TreeEnd] & AsyncDisposable> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dialing = Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const conns = [await listener.accept(), await dialing];
  const end = (conn: Deno.Conn): TreeEnd => ({
    conn,
    frames: new FrameReader(conn),
    out: new FrameWriter(conn.writable, { direct: conn }),
  });
  const ends = [end(conns[0]), end(conns[1])] as [TreeEnd, TreeEnd] & AsyncDisposable;
  ends[Symbol.asyncDispose] = () => {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // Closed already by the test.
      }
    }
    return Promise.resolve();
  };
  return ends;
}
