/**
 * A server process the fault tests signal and watch exit: {@link launchServer} spawns it with the
 * harness's spawnServer and keeps the process, its exit status and whether it still runs at
 * hand; and {@link sameBytes}, a byte comparison fast enough for the large files they send.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { collectLines, SERVER_BANNER, spawnServer, waitFor } from "./harness.ts";

// ------------------------------------------------------------------------------------ helpers

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b)) === 0;
}

// ------------------------------------------------------------------------------ server process

/** A server subprocess whose pid the test knows. */
export interface LaunchedServer extends AsyncDisposable {
  pid: number;
  host: string;
  port: number;
  root: string;
  /** Every stderr line so far. */
  lines: string[];
  /** Settles when the process has exited and its stderr is read. */
  exited: Promise<Deno.CommandStatus>;
  /** Whether it has exited. */
  readonly running: boolean;
  /** Resolves with the first log line matching `pattern`, within a deadline. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends a signal (ignored once the process has exited). */
  kill(signal: Deno.Signal): void;
}

/** Starts `server.ts 0 --root ROOT ...args` (as startServer does) and waits for its banner. */
export async function launchServer(root: string, args: string[] = []): Promise<LaunchedServer> {
  const child = spawnServer(["0", "--root", root, ...args]);
  const { lines, done: reading, firstMatch } = collectLines(child.stderr);
  let running = true;
  const exited = (async () => {
    const status = await child.status;
    running = false;
    await reading;
    return status;
  })();
  const kill = (signal: Deno.Signal) => {
    if (!running) return;
    try {
      child.kill(signal);
    } catch {
      // Exited in the meantime.
    }
  };
  const waitForLog = async (pattern: RegExp, timeoutMs = 10000) => {
    const found = () => lines.find((line) => pattern.test(line));
    await waitFor(`server log line ${pattern}`, () => found() !== undefined || !running, {
      timeoutMs,
    }).catch((error) => {
      throw new Error(`${error.message}; server log so far:\n${lines.join("\n")}`);
    });
    const line = found();
    if (line === undefined) {
      throw new Error(`Server exited without logging ${pattern}:\n${lines.join("\n")}`);
    }
    return line;
  };
  const match = await firstMatch(SERVER_BANNER, { timeoutMs: 20000 });
  if (!match) {
    kill("SIGKILL");
    await exited;
    throw new Error(`Server did not start:\n${lines.join("\n")}`);
  }
  return {
    pid: child.pid,
    host: match[2] ?? match[3],
    port: Number(match[4]),
    root,
    lines,
    exited,
    get running() {
      return running;
    },
    waitForLog,
    kill,
    async [Symbol.asyncDispose]() {
      kill("SIGKILL");
      await exited;
    },
  };
}
