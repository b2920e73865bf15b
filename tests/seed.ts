/**
 * Helpers of the seed ("legacy") protocol tests, both directions: ferry's client and server run
 * with `--legacy`, raw writes and bounded reads on a seed connection, local work folders, and
 * the seed's peer script (tests/seed_peer.py).
 *
 * @module
 */

import {
  type Endpoint,
  makeTempDir,
  REPO_ROOT,
  runClient,
  type RunOptions,
  type RunResult,
  type ServerProcess,
  startServer,
  type TempDir,
} from "./harness.ts";
import { concat } from "./wire.ts";

const MiB = 1 << 20;

/** The big file of the issue: more than one of the seed's 32 MiB chunks. */
export const BIG = 50 * MiB;

/** The seed's peer, run with `python3` from PATH. */
export const SEED_PEER = `${REPO_ROOT}tests/seed_peer.py`;

/** Longest a seed process or a raw read may take before the test fails instead of hanging. */
export const DEADLINE_MS = 30000;

/** Runs ferry's client in seed mode: `client.ts --legacy HOST PORT ...args`. */
export function ferryLegacy(
  endpoint: Endpoint,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  return runClient(["--legacy", endpoint.host, String(endpoint.port), ...args], options);
}

/** Starts ferry's server with the seed protocol on: `server.ts 0 --legacy ...args`. */
export function startLegacyServer(args: string[] = []): Promise<ServerProcess> {
  return startServer({ args: ["--legacy", ...args] });
}

/** Writes all of `bytes` to a raw connection. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

/**
 * Reads from a raw connection until `enough` says so or the peer closes, within the deadline;
 * returns what arrived.
 */
export async function readUntil(
  conn: Deno.Conn,
  enough: (received: Uint8Array) => boolean = () => false,
): Promise<Uint8Array> {
  let received: Uint8Array = new Uint8Array(0);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, DEADLINE_MS);
  try {
    const buffer = new Uint8Array(65536);
    while (!enough(received)) {
      const n = await conn.read(buffer);
      if (n === null) break;
      received = concat([received, buffer.subarray(0, n)]);
    }
  } catch (error) {
    if (timedOut) throw new Error(`No end from the server within ${DEADLINE_MS} ms`);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return received;
}

/** A local folder for one side of a test, with `files` written into it. */
export async function workDir(files: Record<string, Uint8Array> = {}): Promise<TempDir> {
  const work = await makeTempDir({ prefix: "ferry_legacy_work_" });
  for (const [name, bytes] of Object.entries(files)) {
    await Deno.writeFile(`${work.path}/${name}`, bytes);
  }
  return work;
}
